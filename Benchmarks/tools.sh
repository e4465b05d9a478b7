# Sourced by the benchmarks: installs the Debian packages they need and this machine lacks.
# Usage: need_tools CHECK:PACKAGE ...   (CHECK is a command, or a path pattern with a /)
need_tools() {
  local missing=() pair check
  for pair in "$@"; do
    check="${pair%%:*}"
    if [[ "$check" == */* ]]; then
      compgen -G "$check" >/dev/null || missing+=("${pair#*:}")
    else
      command -v "$check" >/dev/null || missing+=("${pair#*:}")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts the packaged services; the benchmarks run their own.
  systemctl stop nginx haproxy postgresql 2>/dev/null || true
}
