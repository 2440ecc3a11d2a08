#!/usr/bin/env bash
# Builds rbench with ggml's Vulkan backend and runs the Vulkan tests on
# Mesa's software Vulkan device (lavapipe, "llvmpipe"), so GPU offload is
# exercised on a real Vulkan device without a GPU.
#
#   scripts/check-vulkan.sh            install what is missing, build, test
#   scripts/check-vulkan.sh --build    install and build only
#
# Bookworm's Vulkan-Hpp headers (1.3.239) lack vk::LayerSettingEXT, which
# ggml-vulkan.cpp uses, so the headers come from Debian trixie's
# libvulkan-dev (downloaded through a temporary apt source that is removed
# again at once: nothing installed is upgraded) and are unpacked into
# target/vulkan-sdk, with lib/libvulkan.so pointing at the system loader.
# The build has its own target directory (target/vulkan) so it never
# disturbs the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"

SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
need=()
for pkg in mesa-vulkan-drivers libvulkan1 glslc spirv-headers vulkan-tools cmake; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

sdk="$PWD/target/vulkan-sdk"
if [[ ! -e "$sdk/include/vulkan/vulkan.hpp" ]] || ! grep -q LayerSettingEXT "$sdk/include/vulkan/vulkan_structs.hpp" 2>/dev/null; then
  echo "fetching Vulkan headers from Debian trixie's libvulkan-dev"
  list=/etc/apt/sources.list.d/rbench-trixie-headers.list
  cleanup() { $SUDO rm -f "$list"; }
  trap cleanup EXIT
  echo "deb http://deb.debian.org/debian trixie main" | $SUDO tee "$list" >/dev/null
  $SUDO apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
  work="$(mktemp -d)"
  (cd "$work" && apt-get download -qq libvulkan-dev/trixie)
  cleanup
  trap - EXIT
  $SUDO apt-get update -qq
  rm -rf "$sdk"; mkdir -p "$sdk/lib"
  dpkg -x "$work"/libvulkan-dev_*.deb "$work/x"
  cp -r "$work/x/usr/include" "$sdk/include"
  loader="$(ls /usr/lib/*/libvulkan.so.1 | head -1)"
  ln -sf "$loader" "$sdk/lib/libvulkan.so"
  rm -rf "$work"
fi

export VULKAN_SDK="$sdk"
export CARGO_TARGET_DIR="$PWD/target/vulkan"
# ggml-vulkan leaves out CPU-type devices (lavapipe is one) unless they are
# named; the software device is the only one here.
export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName" || true
cargo build --release --features vulkan --bin rbench
if [[ "$mode" == "--build" ]]; then
  exit 0
fi
# Tests that need a Vulkan device fail (not skip) when RBENCH_VULKAN=1.
RBENCH_VULKAN=1 cargo test --release --features vulkan --test vulkan
