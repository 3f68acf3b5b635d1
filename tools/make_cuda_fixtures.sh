#!/usr/bin/env bash
# Compile the small CUDA binaries the scanner tests read (tests/data/cudabin/).
#
# Needs nvcc 13.x (sm_75 is its lowest target) and a host C++ compiler. Each kernel is tiny and the
# shared objects link the CUDA runtime dynamically (-cudart shared), so the whole set stays well under
# 2 MB. The expected architecture lists live in tests/data/cudabin/expected.json; regenerate that
# file with `cuobjdump --list-elf --list-ptx` (and `cuobjdump -all` for the f suffix) when changing
# this script.
set -euo pipefail

NVCC="${NVCC:-${CUDA_HOME:-/usr/local/cuda}/bin/nvcc}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$HERE/tests/data/cudabin}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

cat >"$WORK/k.cu" <<'EOF'
__global__ void axpy(float a, float* y, const float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += a * x[i];
}
EOF

so() {  # so NAME [nvcc args...]: a shared object with the kernel, CUDA runtime linked dynamically
  local name="$1"; shift
  "$NVCC" -shared -Xcompiler -fPIC -cudart shared -o "$OUT/$name" "$WORK/k.cu" "$@"
}
fatbin() {
  local name="$1"; shift
  "$NVCC" -fatbin -o "$OUT/$name" "$WORK/k.cu" "$@"
}
cubin() {
  local name="$1"; shift
  "$NVCC" -cubin -o "$OUT/$name" "$WORK/k.cu" "$@"
}
g() { echo "-gencode arch=compute_$1,code=$2"; }

# Mixed SASS with a and f variants, PTX for compute_120 (PTX is ZSTD-compressed by default).
# shellcheck disable=SC2046
so multi.so $(g 75 sm_75) $(g 80 sm_80) $(g 90a sm_90a) $(g 100f sm_100f) $(g 120a sm_120a) $(g 120 compute_120)
# PTX only: no SASS at all, everything is JIT-compiled at load.
# shellcheck disable=SC2046
so ptx_only.so $(g 90 compute_90)
# Shaped like a torch cu126 build: SASS up to Hopper, no PTX (fails on Blackwell).
# shellcheck disable=SC2046
so torch_cu126_like.so $(g 75 sm_75) $(g 80 sm_80) $(g 86 sm_86) $(g 90 sm_90) $(g 90a sm_90a)
# Shaped like a torch cu128/cu130 build: SASS through sm_120.
# shellcheck disable=SC2046
so torch_cu130_like.so $(g 75 sm_75) $(g 80 sm_80) $(g 86 sm_86) $(g 90 sm_90) $(g 90a sm_90a) \
  $(g 100 sm_100) $(g 100a sm_100a) $(g 120 sm_120) $(g 120a sm_120a)
# Shaped like vLLM 0.9.0/0.9.1: Blackwell datacentre SASS but no sm_120, compute_90 PTX.
# shellcheck disable=SC2046
so vllm_no_sm120.so $(g 80 sm_80) $(g 89 sm_89) $(g 90 sm_90) $(g 90a sm_90a) $(g 100 sm_100) $(g 100a sm_100a) \
  $(g 90 compute_90)
# Shaped like a current vLLM: family cubins for Blackwell.
# shellcheck disable=SC2046
so vllm_family.so $(g 80 sm_80) $(g 89 sm_89) $(g 90 sm_90) $(g 90a sm_90a) $(g 100f sm_100f) $(g 120f sm_120f)
# Relocatable device code: kernels in .nv_fatbin, relocatable copy in __nv_relfatbin.
# shellcheck disable=SC2046
so rdc.so -rdc=true $(g 86 sm_86)

# Standalone fatbins, one per compression mode nvcc 13 offers.
# shellcheck disable=SC2046
fatbin nocompress.fatbin --no-compress $(g 86 sm_86) $(g 89 compute_89)
# shellcheck disable=SC2046
fatbin lz4.fatbin --compress-mode=speed $(g 89 sm_89) $(g 89 compute_89)
# shellcheck disable=SC2046
fatbin zstd_all.fatbin -Xfatbin -compress-all $(g 90 sm_90) $(g 120f sm_120f) $(g 120f compute_120f)
# shellcheck disable=SC2046
fatbin family.fatbin --compress-mode=size $(g 100f sm_100f) $(g 100f compute_100f) $(g 103a sm_103a) \
  $(g 121f sm_121f) $(g 120a compute_120a) $(g 110 sm_110)

# Bare cubins (ELF with EM_CUDA).
cubin sm_90.cubin -arch=sm_90
cubin sm_90a.cubin -arch=sm_90a
cubin sm_100a.cubin -arch=sm_100a
cubin sm_100f.cubin -arch=sm_100f
cubin sm_121a.cubin -arch=sm_121a

# Extensions that link a given CUDA runtime major (DT_NEEDED libcudart.so.N) without needing that
# runtime here: link against a stub library whose soname is libcudart.so.N.
for major in 12 13; do
  mkdir -p "$WORK/stub$major"
  echo 'int cuda_stub_marker(void) { return 0; }' >"$WORK/stub$major/s.c"
  cc -shared -fPIC -Wl,-soname,"libcudart.so.$major" -o "$WORK/stub$major/libcudart.so" "$WORK/stub$major/s.c"
done
# shellcheck disable=SC2046
"$NVCC" -shared -Xcompiler -fPIC -cudart none -o "$OUT/ext_cu12.so" "$WORK/k.cu" $(g 80 sm_80) $(g 90 sm_90) \
  -Xlinker --no-as-needed -L"$WORK/stub12" -lcudart
# shellcheck disable=SC2046
"$NVCC" -shared -Xcompiler -fPIC -cudart none -o "$OUT/ext_cu13.so" "$WORK/k.cu" $(g 80 sm_80) $(g 120 sm_120) \
  -Xlinker --no-as-needed -L"$WORK/stub13" -lcudart

# Not CUDA: a plain host shared object, and a text file with an .so name.
echo 'int plain(int x) { return x + 1; }' >"$WORK/plain.c"
cc -shared -fPIC -o "$OUT/plain_host.so" "$WORK/plain.c"
printf 'not an ELF file\n' >"$OUT/not_elf.so"
# Garbage after a fatbin magic: must not crash the scanner.
printf '\x50\xed\x55\xba\x01\x00\x10\x00\xff\xff\xff\xff\x00\x00\x00\x00garbage' >"$OUT/truncated.fatbin"

strip --strip-unneeded "$OUT"/*.so 2>/dev/null || true
du -sh "$OUT"
