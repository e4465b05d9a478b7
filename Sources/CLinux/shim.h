// glibc interfaces the Swift Glibc module leaves out.
#include <malloc.h>
#include <sys/random.h>
