// seventy-emu: runs the CUDA sources of kernels/ and host/ on the CPU, compiled by g++.
//
// The emulated "device" is the calling process: device memory is a guarded arena, a launch runs every
// block of its grid one after another, and every thread of a block is a fiber; fibers switch only at
// synchronization points (__syncthreads, warp collectives, mma.sync). Kernel translation units are
// compiled with the -fsanitize=thread instrumentation pass so that every load and store of device code calls into
// the emulator (runtime.cpp), which checks it:
//   - global memory: the access lies inside one live cudaMalloc allocation (guards, use after free);
//   - shared memory: never-written bytes are poisoned, and two threads touching one byte (one of them
//     writing) with no barrier between them is a race (racecheck);
//   - anything else (host heap, another thread's stack) is an error, as it would fault on a GPU;
//   - every lane named in a warp collective's mask reaches the same collective, every live thread the
//     same __syncthreads (synccheck); launches past __launch_bounds__ or with > 48 KB of dynamic shared
//     memory without the opt-in attribute fail as they do on a GPU.
// A failed check prints the kernel, block and thread and exits the process with status 86.
//
// Streams are one in-order queue that runs at synchronization points (so a host read of a result that
// was not synchronized sees stale bytes); graphs are recorded launch lists replayed with the captured
// arguments. SEVENTY_EMU_SEED shuffles the order of blocks and of the threads' turns.
//
// Sources include <cuda_runtime.h> etc. as usual: emu/include/ holds stand-ins that include this file.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <tuple>
#include <type_traits>
#include <utility>

#define SEVENTY_EMU 1

// ---- declaration specifiers ----
#define __host__
#define __device__
#define __forceinline__ inline
#define __global__ __attribute__((noinline))
// Static __shared__ variables are function-local statics: the emulator runs one block at a time, and
// treats every access from device code to the program's writable static data as shared memory (so
// __device__ global variables, which no kernel uses, would be taken for shared memory).
#define __shared__ static
#define __constant__ static const
#define __align__(n) __attribute__((aligned(n)))
// The thread bound is encoded as that many 32-thread NOP groups at the kernel's entry (patchable
// function entry), which the launch reads back; the minimum-blocks hint has no meaning here.
#define __launch_bounds__(...) EMU_LAUNCH_BOUNDS_(__VA_ARGS__, 0)
#define EMU_LAUNCH_BOUNDS_(maxThreads, ...) __attribute__((patchable_function_entry(((maxThreads) + 31) / 32, 0)))

// kernels/cuda_common.cuh spells launches and dynamic shared memory through these two macros:
//   SEVENTY_LAUNCH(grid, block, smem, stream, kernel)(args...)   ≡ kernel<<<grid, block, smem, stream>>>(args...)
//   SEVENTY_DYNAMIC_SMEM(type, name);                              ≡ extern __shared__ type name[];
#define SEVENTY_LAUNCH(grid, block, smem, stream, ...) \
  ::emu::Launcher(__VA_ARGS__, #__VA_ARGS__, __FILE__, __LINE__, dim3(grid), dim3(block), size_t(smem), (stream))
#define SEVENTY_DYNAMIC_SMEM(type, name) type* const name = static_cast<type*>(::emu::dynamicShared())
// SEVENTY_LAUNCH_PDL: the same, launched with cudaLaunchAttributeProgrammaticStreamSerialization (the
// CUDA spelling in cuda_common.cuh goes through cudaLaunchKernelEx); evaluates to a cudaError_t.
#define SEVENTY_LAUNCH_PDL(grid, block, smem, stream, ...) \
  ::emu::Launcher(__VA_ARGS__, #__VA_ARGS__, __FILE__, __LINE__, dim3(grid), dim3(block), size_t(smem), (stream), true)

// ---- vector types ----
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// ---- runtime API types ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorUnknown = 999,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8, cudaFuncAttributePreferredSharedMemoryCarveout = 9 };
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaHostAllocDefault = 0, cudaHostAllocPortable = 1, cudaHostAllocMapped = 2, cudaHostAllocWriteCombined = 4;
constexpr unsigned cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;

namespace emu {
struct Stream;
struct Event;
struct Graph;
}  // namespace emu
typedef emu::Stream* cudaStream_t;
typedef emu::Event* cudaEvent_t;
typedef emu::Graph* cudaGraph_t;
typedef emu::Graph* cudaGraphExec_t;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int regsPerBlock, warpSize, maxThreadsPerBlock;
  int maxThreadsDim[3], maxGridSize[3];
  int major, minor, multiProcessorCount;
  int l2CacheSize, memoryClockRate, memoryBusWidth, clockRate;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, int attr, int d);
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();

cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }
cudaError_t cudaFree(void* p);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
template <class T>
cudaError_t cudaHostAlloc(T** p, size_t bytes, unsigned flags) { return cudaHostAlloc(reinterpret_cast<void**>(p), bytes, flags); }
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <class F>
cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

// ---- the emulator's own interface (used by the macros above, the PTX stand-ins and the tests) ----
namespace emu {

// Why a check failed; the process exits with this status (tests of the checks look for it).
constexpr int kCheckFailedExit = 86;

struct LaunchInfo {
  const char* name;  // as written at the launch site
  const char* file;
  int line;
  const void* kernel;
  dim3 grid, block;
  size_t smem;
  void (*body)(const void* args);  // one thread's run of the kernel
  void* args;                      // owned, released by destroy
  void (*destroy)(void* args);
  bool programmatic = false;  // launched with programmatic stream serialization (PDL; see cp.async / PDL below)
};
// Validates the configuration (sets the last error and drops the launch on a bad one), then queues it
// on the stream or appends it to the stream's capture.
void submitLaunch(const LaunchInfo& info, cudaStream_t s);

// Device-side hooks (only valid inside a running kernel).
uint3 threadIdx_();
uint3 blockIdx_();
dim3 blockDim_();
dim3 gridDim_();
void* dynamicShared();
void enterDevice();  // the fiber's kernel arguments are copied; from here on accesses are checked
void leaveDevice();
[[noreturn]] void fail(const char* check, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

void syncthreads(const void* site);
void syncwarp(unsigned mask, const void* site);
enum class WarpOp : uint8_t { ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All, Mma };
// One lane's part of a warp collective; returns that lane's result (bits of the shuffled value, or the vote).
uint64_t warpCollective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const void* site);

// Warp-wide mma: every lane passes its fragment registers; the last lane to arrive computes the whole
// product (ptx.cpp) and each lane gets its accumulator registers back.
struct MmaLane {
  uint32_t a[4], b[2];
  float c[4];
};
// The ldmatrix kinds reuse the collective: each lane passes the 16-byte row it addressed in a[0..3]
// (lanes past 8·num pass nothing) and gets its fragment registers back in a[0..num-1] (ptx.cpp).
enum class MmaKind : uint8_t { M16N8K16_BF16_F32, LDMATRIX_X1, LDMATRIX_X2, LDMATRIX_X4, LDMATRIX_X1_TRANS, LDMATRIX_X2_TRANS, LDMATRIX_X4_TRANS };
void mmaSync(MmaKind kind, MmaLane& lane, const void* site);
// The whole-warp computation of one mma (exposed so the tests can check it against a plain product).
void mmaCompute(MmaKind kind, MmaLane (&lanes)[32]);

// Memory accesses the instrumentation does not see (atomics, the PTX stand-ins).
enum class Access : uint8_t { Read, Write, Atomic };
void checkAccess(const void* p, size_t bytes, Access a);
// Whether p lies in the block's shared memory (dynamic, or where static __shared__ variables live).
bool isSharedAddress(const void* p);

// ---- cp.async and programmatic dependent launch (device-side hooks behind emu_ptx.h's stand-ins) ----
// cp.async: the copy is recorded at issue (source checked as a global read, destination as a shared
// write for racecheck, its bytes marked in flight) and performed when the issuing thread's
// cp.async.wait_group retires its group; any access to an in-flight byte fails ("cp.async check").
void cpAsync(void* dstShared, const void* srcGlobal, int cpSize, int srcSize);
void cpAsyncCommitGroup();
void cpAsyncWaitGroup(int n);  // retires all but the n most recent committed groups
// griddepcontrol: launches run in order, so waiting is a no-op; but a thread of a programmatic launch that
// touches an allocation the previous kernel wrote before its griddepcontrol.wait fails ("PDL check").
void gridDepWait();
void gridDepLaunchDependents();

// Reseeds the shuffling of block order and thread turns (default: SEVENTY_EMU_SEED, else 1).
void setSeed(uint64_t seed);

// Launch bound (max threads per block) read back from a kernel's entry; 0 when it has none.
int launchBoundOf(const void* kernel);

template <class... P>
struct Launcher {
  using Kernel = void (*)(P...);
  using Args = std::tuple<std::decay_t<P>...>;
  Kernel k;
  const char* name;
  const char* file;
  int line;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  bool programmatic;
  Launcher(Kernel k_, const char* n, const char* f, int l, dim3 g, dim3 b, size_t sm, cudaStream_t s, bool pdl = false)
      : k(k_), name(n), file(f), line(l), grid(g), block(b), smem(sm), stream(s), programmatic(pdl) {}

  struct Pack {
    Kernel k;
    Args args;
  };
  static void body(const void* p) {
    const Pack* pack = static_cast<const Pack*>(p);
    Args local = pack->args;  // on this thread's stack, as a kernel's parameters are per thread
    Kernel k = pack->k;
    enterDevice();
    std::apply(k, local);
    leaveDevice();
  }
  static void destroy(void* p) { delete static_cast<Pack*>(p); }

  // Returns cudaSuccess; a rejected configuration is reported through cudaGetLastError, as on the GPU.
  template <class... A>
  cudaError_t operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "wrong number of kernel arguments");
    Pack* pack = new Pack{k, Args(std::forward<A>(a)...)};
    submitLaunch(LaunchInfo{name, file, line, reinterpret_cast<const void*>(k), grid, block, smem, &body, pack, &destroy, programmatic}, stream);
    return cudaSuccess;
  }
};
template <class... P>
Launcher(void (*)(P...), const char*, const char*, int, dim3, dim3, size_t, cudaStream_t) -> Launcher<P...>;
template <class... P>
Launcher(void (*)(P...), const char*, const char*, int, dim3, dim3, size_t, cudaStream_t, bool) -> Launcher<P...>;

template <class T>
inline uint64_t toBits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 64 bits");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
inline T fromBits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace emu

// ---- device built-ins ----
#define threadIdx (::emu::threadIdx_())
#define blockIdx (::emu::blockIdx_())
#define blockDim (::emu::blockDim_())
#define gridDim (::emu::gridDim_())
constexpr int warpSize = 32;

#define EMU_STR2_(x) #x
#define EMU_STR_(x) EMU_STR2_(x)
// The call site names the barrier / collective: lanes must meet at the same one.
#define EMU_SITE_ (static_cast<const void*>(__FILE__ ":" EMU_STR_(__LINE__)))
#define __syncthreads() ::emu::syncthreads(EMU_SITE_)
#define __syncwarp(...) ::emu::syncwarp(::emu::maskOr_(__VA_ARGS__), EMU_SITE_)

namespace emu {
inline unsigned maskOr_() { return 0xffffffffu; }
inline unsigned maskOr_(unsigned m) { return m; }
inline int widthOr_() { return 32; }
inline int widthOr_(int w) { return w; }
template <class T>
inline T shfl(WarpOp op, unsigned mask, T v, int arg, int width, const void* site) {
  return fromBits<T>(warpCollective(op, mask, toBits(v), arg, width, site));
}
}  // namespace emu
#define __shfl_sync(mask, v, src, ...) ::emu::shfl(::emu::WarpOp::ShflIdx, (mask), (v), (src), EMU_WIDTH_(__VA_ARGS__), EMU_SITE_)
#define __shfl_up_sync(mask, v, d, ...) ::emu::shfl(::emu::WarpOp::ShflUp, (mask), (v), int(d), EMU_WIDTH_(__VA_ARGS__), EMU_SITE_)
#define __shfl_down_sync(mask, v, d, ...) ::emu::shfl(::emu::WarpOp::ShflDown, (mask), (v), int(d), EMU_WIDTH_(__VA_ARGS__), EMU_SITE_)
#define __shfl_xor_sync(mask, v, m, ...) ::emu::shfl(::emu::WarpOp::ShflXor, (mask), (v), int(m), EMU_WIDTH_(__VA_ARGS__), EMU_SITE_)
#define EMU_WIDTH_(...) ::emu::widthOr_(__VA_ARGS__)
#define __ballot_sync(mask, pred) unsigned(::emu::warpCollective(::emu::WarpOp::Ballot, (mask), (pred) ? 1 : 0, 0, 32, EMU_SITE_))
#define __any_sync(mask, pred) int(::emu::warpCollective(::emu::WarpOp::Any, (mask), (pred) ? 1 : 0, 0, 32, EMU_SITE_))
#define __all_sync(mask, pred) int(::emu::warpCollective(::emu::WarpOp::All, (mask), (pred) ? 1 : 0, 0, 32, EMU_SITE_))

// Memory fences order one thread's global accesses for other blocks; blocks run one at a time here, so
// there is nothing to order (a missing fence is invisible, see the README).
inline void __threadfence() {}

// Atomics (one block runs at a time, so plain read-modify-write is atomic). Not instrumented: the
// access is checked once, as an atomic (atomics of different threads do not race with each other).
#define EMU_NOT_INSTRUMENTED __attribute__((no_sanitize("thread"), noinline))
#define EMU_ATOMIC_(name, expr)                          \
  template <class T, class U>                            \
  EMU_NOT_INSTRUMENTED T name(T* p, U v_) {              \
    ::emu::checkAccess(p, sizeof(T), ::emu::Access::Atomic); \
    const T v = T(v_);                                   \
    const T old = *p;                                    \
    *p = (expr);                                         \
    return old;                                          \
  }
EMU_ATOMIC_(atomicAdd, old + v)
EMU_ATOMIC_(atomicSub, old - v)
EMU_ATOMIC_(atomicExch, v)
EMU_ATOMIC_(atomicMin, v < old ? v : old)
EMU_ATOMIC_(atomicMax, v > old ? v : old)
EMU_ATOMIC_(atomicAnd, old & v)
EMU_ATOMIC_(atomicOr, old | v)
EMU_ATOMIC_(atomicXor, old ^ v)
#undef EMU_ATOMIC_
template <class T>
EMU_NOT_INSTRUMENTED T atomicCAS(T* p, T cmp, T v) {
  ::emu::checkAccess(p, sizeof(T), ::emu::Access::Atomic);
  const T old = *p;
  if (old == cmp) *p = v;
  return old;
}

// Bit casts and math.
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline void sincosf(float x, float* s, float* c) { *s = std::sin(x); *c = std::cos(x); }
inline float __saturatef(float x) { return x < 0 ? 0.0f : (x > 1 ? 1.0f : x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// Read-only cache loads: plain loads here (ld.global.nc semantics: see emu_ptx.h).
template <class T>
inline T __ldg(const T* p) { return *p; }
// ld.global.cg (cache in L2, not L1): for data other blocks of the same launch wrote; a plain load here.
template <class T>
inline T __ldcg(const T* p) { return *p; }
