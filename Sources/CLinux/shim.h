// glibc interfaces the Swift Glibc module leaves out.
#include <sys/random.h>
