# Shared by deploy/local.sh and tests/run.sh (sourced, not run): finds the
# system packages a script needs and installs the missing ones with apt-get
# when running as root, or names them and stops otherwise.
#
#   need_command cc build-essential    # package to install when `cc` is absent
#   need_libclang                      # what RocksDB's bindgen loads
#   install_needed                     # installs (or reports) what was found missing

needed_packages=()

need_command() { # command package
  command -v "$1" >/dev/null || needed_packages+=("$2")
}

# True when bindgen (through clang-sys, with RocksDB's `bindgen-runtime`)
# would find a libclang to load. It searches these directories for these
# names and skips `libclang-cpp`, which has a different API: a plain
# `libclang*` glob matches `libclang-cpp.so.14` and wrongly passes.
libclang_loadable() {
  local dirs=()
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    dirs=("$LIBCLANG_PATH")
  else
    local prefix
    prefix="$(llvm-config --prefix 2>/dev/null || true)"
    [ -n "$prefix" ] && dirs+=("$prefix/bin" "$prefix/lib" "$prefix/lib64")
    dirs+=(/usr/local/llvm*/lib* /usr/local/lib*/*/* /usr/local/lib*/* /usr/local/lib* /usr/lib*/*/* /usr/lib*/* /usr/lib*)
  fi
  local dir file
  for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for file in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
      [ -e "$file" ] || continue
      case "${file##*/}" in *-cpp.*) continue ;; esac
      return 0
    done
  done
  return 1
}

need_libclang() {
  libclang_loadable || needed_packages+=(libclang-dev)
}

install_needed() {
  ((${#needed_packages[@]})) || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${needed_packages[@]}"
  else
    echo "missing system packages: ${needed_packages[*]} (install them, then re-run)" >&2
    exit 1
  fi
  needed_packages=()
}
