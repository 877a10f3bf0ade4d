// seventy-emu runtime: fibers, block scheduling, warp collectives, the access checks and the CUDA
// runtime API stand-ins. Compiled WITHOUT the access instrumentation (it is the instrumentation's target).
#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "emu_runtime.h"

// x86-64: a hand-written stack switch (no signal-mask system call per switch); elsewhere, or with
// -DSEVENTY_EMU_UCONTEXT, ucontext.
#if defined(__x86_64__) && !defined(SEVENTY_EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace emu {
namespace {

// =============================================================================================
// Fibers
// =============================================================================================
constexpr size_t kStackBytes = 128 * 1024;

struct Fiber;
}  // namespace
}  // namespace emu
extern "C" void emu_fiber_main();
namespace emu {
namespace {

#if EMU_ASM_SWITCH
// switch(saveSp, newSp): push the callee-saved registers, swap stacks, pop, return on the new stack.
extern "C" void emu_switch(void** saveSp, void* newSp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch,.-emu_switch
)");
extern "C" void emu_fiber_entry();
asm(R"(
.text
.globl emu_fiber_entry
.type emu_fiber_entry,@function
emu_fiber_entry:
  call emu_fiber_main
  ud2
.size emu_fiber_entry,.-emu_fiber_entry
)");
#endif

struct Fiber {
  char* stackLo = nullptr;  // usable range (a guard page below)
  char* stackHi = nullptr;
#if EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
};

#if EMU_ASM_SWITCH
void* g_schedSp = nullptr;
#else
ucontext_t g_schedCtx;
#endif

std::vector<Fiber> g_fibers;  // a pool, one per thread of the largest block so far

void allocFibers(size_t n) {
  while (g_fibers.size() < n) {
    Fiber f;
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    char* base = static_cast<char*>(mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (base == MAP_FAILED) {
      fprintf(stderr, "seventy-emu: cannot map fiber stacks\n");
      abort();
    }
    mprotect(base, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
    f.stackLo = base + page;
    f.stackHi = base + page + kStackBytes;
    g_fibers.push_back(f);
  }
}

void fiberReset(Fiber& f) {
#if EMU_ASM_SWITCH
  uintptr_t top = uintptr_t(f.stackHi) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = reinterpret_cast<void*>(&emu_fiber_entry);  // ret target; it calls emu_fiber_main with rsp ≡ 0 (mod 16)
  for (int i = 0; i < 6; i++) *--sp = nullptr;              // rbp rbx r12..r15
  --sp;                                                     // mxcsr + x87 control word
  uint32_t mx;
  uint16_t cw;
  asm volatile("stmxcsr %0" : "=m"(mx));
  asm volatile("fnstcw %0" : "=m"(cw));
  memcpy(reinterpret_cast<char*>(sp), &mx, 4);
  memcpy(reinterpret_cast<char*>(sp) + 4, &cw, 2);
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stackLo;
  f.ctx.uc_stack.ss_size = size_t(f.stackHi - f.stackLo);
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, emu_fiber_main, 0);
#endif
}

void switchToFiber(Fiber& f) {
#if EMU_ASM_SWITCH
  emu_switch(&g_schedSp, f.sp);
#else
  swapcontext(&g_schedCtx, &f.ctx);
#endif
}
void switchToScheduler(Fiber& f) {
#if EMU_ASM_SWITCH
  emu_switch(&f.sp, g_schedSp);
#else
  swapcontext(&f.ctx, &g_schedCtx);
#endif
}

// =============================================================================================
// Launch state
// =============================================================================================
enum class TState : uint8_t { Ready, Barrier, Warp, Done };

struct AsyncCopy {  // one cp.async, performed when its group retires
  char* dst;
  const char* src;
  int size, srcSize;
};

struct ThreadState {
  TState st = TState::Ready;
  bool inDevice = false;
  bool depWaited = false;      // passed griddepcontrol.wait
  const char* site = nullptr;  // barrier or collective it waits at
  std::vector<AsyncCopy> openCopies;                // cp.async's not yet committed
  std::deque<std::vector<AsyncCopy>> copyGroups;  // committed, oldest first
};

struct Pending {  // one lane's part of a warp collective
  bool on = false;
  WarpOp op;
  unsigned mask;
  uint64_t value;
  int arg, width;
  const char* site;
  MmaLane* mma;
  uint64_t result;
};

struct Block {
  const LaunchInfo* L = nullptr;
  uint3 idx{0, 0, 0};
  int n = 0;  // threads
  std::vector<ThreadState> t;
  std::vector<Pending> pend;        // [n] lanes' pending collectives (indexed by linear thread id)
  uint32_t epoch = 0;               // barriers passed
};

Block g_block;
int g_cur = -1;  // running thread (linear id), -1 in host code
bool g_checking = false;
uint32_t g_gen = 0;  // block generation: shared-memory shadow entries of older blocks read as never written
uint64_t g_seed = 1;
std::mt19937_64 g_rng(1);
bool g_trace = false;

// Dynamic shared memory of the running block.
constexpr size_t kMaxDynSmem = 227 * 1024;  // sm_90 opt-in limit (232448 bytes)
char* g_dynSmem = nullptr;
size_t g_dynBytes = 0;

uint3 tidOf(int linear) {
  const dim3 b = g_block.L->block;
  return uint3{unsigned(linear % b.x), unsigned(linear / b.x % b.y), unsigned(linear / (b.x * b.y))};
}

std::string where() {
  char buf[256];
  if (!g_block.L) return "host code";
  const uint3 t = g_cur >= 0 ? tidOf(g_cur) : uint3{0, 0, 0};
  snprintf(buf, sizeof buf, "kernel %s (launched at %s:%d), block (%u,%u,%u), thread (%u,%u,%u) [warp %d lane %d]", g_block.L->name,
           g_block.L->file, g_block.L->line, g_block.idx.x, g_block.idx.y, g_block.idx.z, t.x, t.y, t.z, g_cur / 32, g_cur % 32);
  return buf;
}

}  // namespace

void fail(const char* check, const char* fmt, ...) {
  g_checking = false;
  fprintf(stderr, "\nseventy-emu: %s FAILED in %s:\n  ", check, where().c_str());
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n  (SEVENTY_EMU_SEED=%llu)\n", (unsigned long long)g_seed);
  fflush(stderr);
  fflush(stdout);
  _exit(kCheckFailedExit);
}

namespace {

// =============================================================================================
// Memory map: device arena, pinned host memory, static data (shared memory), read-only image
// =============================================================================================
constexpr size_t kArenaBytes = size_t(64) << 30;
constexpr size_t kGuardBytes = 64 * 1024;
char* g_arena = nullptr;
size_t g_arenaUsed = 0;
size_t g_deviceBytes = 0;  // live
constexpr size_t kTotalDeviceBytes = size_t(4) << 30;

struct Alloc {
  size_t bytes;
  bool live;
};
std::map<uintptr_t, Alloc> g_allocs;  // by base; freed ones stay (never reused) for the messages
std::map<uintptr_t, size_t> g_pinned;

struct Range {
  uintptr_t lo, hi;
};
Range g_data{0, 0};          // writable static data of the program: where static __shared__ variables live
std::vector<Range> g_image;  // read-only segments of every loaded object (constants, code)

struct Shadow {  // per byte of shared memory
  uint32_t gen, wEpoch, rEpoch;
  uint16_t wThread, rThread;
  uint8_t written, rMulti, atomic, inFlight;  // inFlight: the target of a cp.async not yet waited for
};
Shadow* g_dataShadow = nullptr;
Shadow* g_dynShadow = nullptr;

int phdrCallback(dl_phdr_info* info, size_t, void* first) {
  const bool isMain = *static_cast<bool*>(first);
  *static_cast<bool*>(first) = false;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
    if (ph.p_flags & PF_W) {
      if (isMain) g_data = {g_data.lo ? std::min(g_data.lo, lo) : lo, std::max(g_data.hi, hi)};
    } else {
      g_image.push_back({lo, hi});
    }
  }
  return 0;
}

void initOnce() {
  static bool done = false;
  if (done) return;
  done = true;
  if (const char* s = getenv("SEVENTY_EMU_SEED")) g_seed = strtoull(s, nullptr, 10);
  g_rng.seed(g_seed);
  g_trace = getenv("SEVENTY_EMU_TRACE") != nullptr;
  void* a = mmap(nullptr, kArenaBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == MAP_FAILED) {
    fprintf(stderr, "seventy-emu: cannot reserve the device arena\n");
    abort();
  }
  g_arena = static_cast<char*>(a);
  bool first = true;
  dl_iterate_phdr(phdrCallback, &first);
  const size_t dataBytes = g_data.hi - g_data.lo;
  g_dataShadow = static_cast<Shadow*>(mmap(nullptr, dataBytes * sizeof(Shadow) + 1, PROT_READ | PROT_WRITE,
                                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  g_dynSmem = static_cast<char*>(aligned_alloc(1024, kMaxDynSmem));
  g_dynShadow = static_cast<Shadow*>(mmap(nullptr, kMaxDynSmem * sizeof(Shadow), PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (g_dataShadow == MAP_FAILED || g_dynShadow == MAP_FAILED || !g_dynSmem) {
    fprintf(stderr, "seventy-emu: cannot map the shared-memory shadow\n");
    abort();
  }
}

const std::pair<const uintptr_t, Alloc>* findAlloc(uintptr_t a) {
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  return &*it;
}

bool liveDeviceRange(const void* p, size_t n) {
  const uintptr_t a = uintptr_t(p);
  const auto* al = findAlloc(a);
  return al && al->second.live && a + n <= al->first + al->second.bytes;
}
bool inArena(const void* p) { return uintptr_t(p) >= uintptr_t(g_arena) && uintptr_t(p) < uintptr_t(g_arena) + kArenaBytes; }
bool isPinned(const void* p, size_t n) {
  auto it = g_pinned.upper_bound(uintptr_t(p));
  if (it == g_pinned.begin()) return false;
  --it;
  return uintptr_t(p) + n <= it->first + it->second;
}

const char* accessName(Access a) { return a == Access::Read ? "read" : a == Access::Write ? "write" : "atomic"; }

void describeThread(char* buf, size_t len, int linear) {
  const uint3 t = tidOf(linear);
  snprintf(buf, len, "thread (%u,%u,%u) [warp %d]", t.x, t.y, t.z, linear / 32);
}

// The static variable holding address a, from the program's own symbol table (function-local statics
// are not in the dynamic symbol table dladdr reads). Only on the error path.
std::string staticSymbolAt(uintptr_t a) {
  uintptr_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        *static_cast<uintptr_t*>(out) = info->dlpi_addr;
        return 1;  // the first entry is the program
      },
      &bias);
  FILE* f = fopen("/proc/self/exe", "rb");
  if (!f) return "";
  std::vector<char> elf;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) elf.insert(elf.end(), chunk, chunk + n);
  fclose(f);
  if (elf.size() < sizeof(ElfW(Ehdr))) return "";
  const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(elf.data());
  if (eh->e_shoff + size_t(eh->e_shnum) * sizeof(ElfW(Shdr)) > elf.size()) return "";
  const auto* sh = reinterpret_cast<const ElfW(Shdr)*>(elf.data() + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
    const auto* syms = reinterpret_cast<const ElfW(Sym)*>(elf.data() + sh[i].sh_offset);
    const char* names = elf.data() + sh[sh[i].sh_link].sh_offset;
    for (size_t k = 0; k < sh[i].sh_size / sizeof(ElfW(Sym)); k++) {
      const ElfW(Sym)& y = syms[k];
      if (ELF64_ST_TYPE(y.st_info) != STT_OBJECT || !y.st_size) continue;
      const uintptr_t lo = bias + y.st_value;
      if (a < lo || a >= lo + y.st_size) continue;
      int status = 0;
      char* dem = abi::__cxa_demangle(names + y.st_name, nullptr, nullptr, &status);
      std::string name = status == 0 && dem ? dem : names + y.st_name;
      free(dem);
      return name + " +" + std::to_string(a - lo);
    }
  }
  return "";
}

std::string spaceOf(uintptr_t a) {
  char buf[96];
  if (a >= uintptr_t(g_dynSmem) && a < uintptr_t(g_dynSmem) + kMaxDynSmem) {
    snprintf(buf, sizeof buf, "dynamic shared memory +%zu", size_t(a - uintptr_t(g_dynSmem)));
    return buf;
  }
  const std::string sym = staticSymbolAt(a);
  if (!sym.empty()) return "__shared__ " + sym;
  snprintf(buf, sizeof buf, "__shared__ variable at %p", reinterpret_cast<void*>(a));
  return buf;
}

// Programmatic dependent launch: allocations written by the running kernel, and by the kernel before it.
// Allocation granularity: a kernel that reads a buffer the previous kernel writes elsewhere in the same
// allocation, before its wait, is reported too (the engine keeps each activation in its own allocation).
std::vector<uintptr_t> g_writtenNow, g_writtenBefore;
uintptr_t g_lastWrittenBase = 0;

void pdlAccess(const std::pair<const uintptr_t, Alloc>& al, uintptr_t a, Access acc) {
  const uintptr_t base = al.first;
  if (g_block.L->programmatic && !g_block.t[size_t(g_cur)].depWaited &&
      std::find(g_writtenBefore.begin(), g_writtenBefore.end(), base) != g_writtenBefore.end())
    fail("PDL check", "%s at %p (allocation [%p, +%zu)) before griddepcontrol.wait: the previous kernel writes this allocation, and a "
         "programmatic launch may run alongside it", accessName(acc), reinterpret_cast<void*>(a), reinterpret_cast<void*>(base), al.second.bytes);
  if (acc != Access::Read && base != g_lastWrittenBase) {
    g_lastWrittenBase = base;
    if (std::find(g_writtenNow.begin(), g_writtenNow.end(), base) == g_writtenNow.end()) g_writtenNow.push_back(base);
  }
}

void sharedAccess(Shadow* sh, uintptr_t a, size_t n, Access acc) {
  const uint32_t E = g_block.epoch;
  const int me = g_cur, myWarp = me / 32;
  for (size_t i = 0; i < n; i++) {
    Shadow& s = sh[i];
    if (s.gen != g_gen) {
      s = Shadow{};
      s.gen = g_gen;
      s.wThread = s.rThread = 0xffff;
    }
    char other[96];
    if (s.inFlight)
      fail("cp.async check", "%s of %zu bytes at %s touches a byte whose cp.async is still in flight (no cp.async.wait_group retired it)",
           accessName(acc), n, spaceOf(a + i).c_str());
    if (acc == Access::Read || acc == Access::Atomic) {
      if (!s.written)
        fail("shared-memory initcheck", "%s of %zu bytes at %s reads a byte that no thread of this block has written", accessName(acc), n,
             spaceOf(a + i).c_str());
    }
    if (s.written && s.wEpoch == E && s.wThread != 0xffff && s.wThread / 32 != myWarp && !(acc == Access::Atomic && s.atomic)) {
      describeThread(other, sizeof other, s.wThread);
      fail("shared-memory racecheck", "%s of %s races with a write by %s: no __syncthreads() between them", accessName(acc),
           spaceOf(a + i).c_str(), other);
    }
    if (acc != Access::Read && s.rEpoch == E && s.rThread != 0xffff && (s.rMulti || s.rThread / 32 != myWarp)) {
      describeThread(other, sizeof other, s.rThread);
      fail("shared-memory racecheck", "%s of %s races with a read by %s%s: no __syncthreads() between them", accessName(acc),
           spaceOf(a + i).c_str(), other, s.rMulti ? " (and other warps)" : "");
    }
    if (acc == Access::Read) {
      if (s.rEpoch != E || s.rThread == 0xffff) {
        s.rEpoch = E;
        s.rThread = uint16_t(me);
        s.rMulti = 0;
      } else if (s.rThread / 32 != myWarp) {
        s.rMulti = 1;
      }
    } else {
      s.written = 1;
      s.wEpoch = E;
      s.wThread = uint16_t(me);
      s.atomic = acc == Access::Atomic;
    }
  }
}

}  // namespace

void checkAccess(const void* p, size_t n, Access acc) {
  if (!g_checking) return;
  const uintptr_t a = uintptr_t(p);
  const Fiber& f = g_fibers[size_t(g_cur)];
  if (a >= uintptr_t(f.stackLo) && a + n <= uintptr_t(f.stackHi)) return;  // its own local memory
  if ((n == 2 || n == 4 || n == 8 || n == 16) && (a & (n - 1)) != 0)
    fail("alignment", "%s of %zu bytes at %p is not %zu-byte aligned (a misaligned address on the GPU)", accessName(acc), n, p, n);
  if (inArena(p)) {
    static const std::pair<const uintptr_t, Alloc>* last = nullptr;
    if (last && last->second.live && a >= last->first && a + n <= last->first + last->second.bytes) return pdlAccess(*last, a, acc);
    const auto* al = findAlloc(a);
    last = al;
    if (al && a + n <= al->first + al->second.bytes && a >= al->first) {
      if (al->second.live) return pdlAccess(*al, a, acc);
      fail("memcheck", "%s of %zu bytes at %p: allocation [%p, +%zu) was freed", accessName(acc), n, p, (void*)al->first, al->second.bytes);
    }
    if (al)
      fail("memcheck", "%s of %zu bytes at %p is outside every allocation (nearest below: [%p, +%zu), %zd bytes past its end)", accessName(acc),
           n, p, (void*)al->first, al->second.bytes, ssize_t(a - (al->first + al->second.bytes)));
    fail("memcheck", "%s of %zu bytes at %p is outside every allocation", accessName(acc), n, p);
  }
  if (a >= uintptr_t(g_dynSmem) && a < uintptr_t(g_dynSmem) + kMaxDynSmem) {
    if (a + n > uintptr_t(g_dynSmem) + g_dynBytes)
      fail("memcheck", "%s of %zu bytes at dynamic shared memory +%zu is past the launch's %zu bytes", accessName(acc), n,
           size_t(a - uintptr_t(g_dynSmem)), g_dynBytes);
    sharedAccess(g_dynShadow + (a - uintptr_t(g_dynSmem)), a, n, acc);
    return;
  }
  if (a >= g_data.lo && a + n <= g_data.hi) {
    sharedAccess(g_dataShadow + (a - g_data.lo), a, n, acc);
    return;
  }
  if (acc == Access::Read)
    for (const Range& r : g_image)
      if (a >= r.lo && a + n <= r.hi) return;  // constants of the program image
  fail("memcheck", "%s of %zu bytes at %p: not device memory (host memory, or another thread's local memory)", accessName(acc), n, p);
}

bool isSharedAddress(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return (a >= uintptr_t(g_dynSmem) && a < uintptr_t(g_dynSmem) + kMaxDynSmem) || (a >= g_data.lo && a < g_data.hi);
}

}  // namespace emu

// ---- the instrumentation's callbacks: -fsanitize=thread's compiler pass calls these for every load and
// store of the kernel translation units; no sanitizer runtime is linked, the emulator is the runtime ----
extern "C" {
#define EMU_CB(n)                                                                                                    \
  void __tsan_read##n(void* p) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Read); }                   \
  void __tsan_write##n(void* p) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Write); }                 \
  void __tsan_unaligned_read##n(void* p) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Read); }         \
  void __tsan_unaligned_write##n(void* p) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Write); }       \
  void __tsan_volatile_read##n(void* p) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Read); }          \
  void __tsan_volatile_write##n(void* p) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Write); }
EMU_CB(1)
EMU_CB(2)
EMU_CB(4)
EMU_CB(8)
EMU_CB(16)
#undef EMU_CB
void __tsan_read_range(void* p, unsigned long n) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Read); }
void __tsan_write_range(void* p, unsigned long n) { if (emu::g_checking) emu::checkAccess(p, n, emu::Access::Write); }
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
// Atomics in instrumented code (function-local static guards): plain sequentially consistent ones.
#define EMU_ATOMIC(bits)                                                                                   \
  int##bits##_t __tsan_atomic##bits##_load(const volatile int##bits##_t* p, int) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##bits##_store(volatile int##bits##_t* p, int##bits##_t v, int) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
EMU_ATOMIC(8)
EMU_ATOMIC(16)
EMU_ATOMIC(32)
EMU_ATOMIC(64)
#undef EMU_ATOMIC
}

namespace emu {
namespace {
void describeThread(char* buf, size_t len, int linear);
}
}  // namespace emu

extern "C" void emu_fiber_main() {
  using namespace emu;
  const int me = g_cur;
  g_block.L->body(g_block.L->args);
  g_checking = false;
  g_block.t[size_t(me)].st = TState::Done;
  g_block.t[size_t(me)].inDevice = false;
  // A lane named by a collective its warp-mates wait at will never arrive.
  const int w0 = me / 32 * 32;
  for (int l = w0; l < std::min(w0 + 32, g_block.n); l++) {
    const Pending& p = g_block.pend[size_t(l)];
    if (p.on && (p.mask >> (me - w0) & 1u)) {
      char buf[96];
      describeThread(buf, sizeof buf, l);
      fail("synccheck", "this thread exited while %s waits for it at a warp collective (%s, mask 0x%08x)", buf, p.site, p.mask);
    }
  }
  switchToScheduler(g_fibers[size_t(me)]);
  abort();  // never resumed
}

namespace emu {
namespace {

void yieldToScheduler() {
  const int me = g_cur;
  g_checking = false;
  switchToScheduler(g_fibers[size_t(me)]);
  // resumed by the scheduler, which restores g_cur and g_checking
}

void runThread(int i) {
  g_cur = i;
  g_checking = g_block.t[size_t(i)].inDevice;
  switchToFiber(g_fibers[size_t(i)]);
  g_cur = -1;
  g_checking = false;
}

void runBlock(const LaunchInfo& L, uint3 idx, std::vector<int>& order) {
  Block& B = g_block;
  B.idx = idx;
  B.epoch = 0;
  g_gen++;
  for (int i = 0; i < B.n; i++) {
    B.t[size_t(i)] = ThreadState{};
    B.pend[size_t(i)].on = false;
    fiberReset(g_fibers[size_t(i)]);
  }
  for (;;) {
    std::shuffle(order.begin(), order.end(), g_rng);
    bool ran = false;
    for (int i : order)
      if (B.t[size_t(i)].st == TState::Ready) {
        runThread(i);
        ran = true;
      }
    if (ran) continue;
    int done = 0, atBarrier = 0;
    for (const ThreadState& t : B.t) {
      done += t.st == TState::Done;
      atBarrier += t.st == TState::Barrier;
    }
    if (done == B.n) return;
    if (atBarrier > 0 && done > 0) {
      int d = 0, w = 0;
      while (B.t[size_t(d)].st != TState::Done) d++;
      while (B.t[size_t(w)].st != TState::Barrier) w++;
      g_cur = w;
      char buf[96];
      describeThread(buf, sizeof buf, d);
      fail("synccheck", "this thread waits at __syncthreads() (%s) that %s never reaches (it exited)", B.t[size_t(w)].site, buf);
    }
    if (atBarrier == B.n) {
      const char* site = B.t[0].site;
      for (int i = 1; i < B.n; i++)
        if (strcmp(B.t[size_t(i)].site, site) != 0) {
          g_cur = i;
          fail("synccheck", "divergent __syncthreads(): this thread waits at %s, thread 0 at %s", B.t[size_t(i)].site, site);
        }
      B.epoch++;
      for (ThreadState& t : B.t) t.st = TState::Ready;
      continue;
    }
    // Nothing can run: some lanes wait at a collective whose other lanes wait at a barrier.
    for (int i = 0; i < B.n; i++)
      if (B.t[size_t(i)].st == TState::Warp) {
        const Pending& p = B.pend[size_t(i)];
        for (int l = 0; l < 32; l++) {
          const int j = i / 32 * 32 + l;
          if (!(p.mask >> l & 1u) || j >= B.n || B.pend[size_t(j)].on) continue;
          g_cur = i;
          char buf[96];
          describeThread(buf, sizeof buf, j);
          fail("synccheck", "deadlock: this thread waits at a warp collective (%s, mask 0x%08x) that %s never reaches (it waits at %s)", p.site,
               p.mask, buf, B.t[size_t(j)].site ? B.t[size_t(j)].site : "?");
        }
      }
    fail("synccheck", "deadlock in the block");
  }
}

struct FuncAttrs {
  int maxDynSmem = 48 * 1024;
};
std::map<const void*, FuncAttrs> g_funcAttrs;

}  // namespace

extern "C" void* __start___patchable_function_entries[] __attribute__((weak));
extern "C" void* __stop___patchable_function_entries[] __attribute__((weak));

int launchBoundOf(const void* kernel) {
  bool listed = false;
  for (void** p = __start___patchable_function_entries; p && p < __stop___patchable_function_entries; p++)
    if (*p == kernel) listed = true;
  if (!listed) return 0;
  const unsigned char* c = static_cast<const unsigned char*>(kernel);
  if (c[0] == 0xf3 && c[1] == 0x0f && c[2] == 0x1e && c[3] == 0xfa) c += 4;  // endbr64
  int nops = 0;
  while (c[nops] == 0x90) nops++;
  return nops * 32;
}

namespace {

void runLaunch(const LaunchInfo& L) {
  const int n = int(L.block.x * L.block.y * L.block.z);
  if (g_trace)
    fprintf(stderr, "seventy-emu: %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", L.name, L.grid.x, L.grid.y, L.grid.z, L.block.x, L.block.y,
            L.block.z, L.smem);
  allocFibers(size_t(n));
  Block& B = g_block;
  B.L = &L;
  B.n = n;
  B.t.assign(size_t(n), ThreadState{});
  B.pend.assign(size_t(n), Pending{});
  g_dynBytes = L.smem;
  g_writtenNow.clear();
  g_lastWrittenBase = 0;
  std::vector<uint3> blocks;
  for (unsigned z = 0; z < L.grid.z; z++)
    for (unsigned y = 0; y < L.grid.y; y++)
      for (unsigned x = 0; x < L.grid.x; x++) blocks.push_back(uint3{x, y, z});
  std::shuffle(blocks.begin(), blocks.end(), g_rng);
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) order[size_t(i)] = i;
  for (const uint3& b : blocks) runBlock(L, b, order);
  B.L = nullptr;
  g_writtenBefore.swap(g_writtenNow);
}

}  // namespace

void setSeed(uint64_t seed) {
  initOnce();
  g_seed = seed;
  g_rng.seed(seed);
}

// ---- device-side hooks ----
uint3 threadIdx_() { return tidOf(g_cur); }
uint3 blockIdx_() { return g_block.idx; }
dim3 blockDim_() { return g_block.L->block; }
dim3 gridDim_() { return g_block.L->grid; }
void* dynamicShared() { return g_dynSmem; }
void enterDevice() {
  g_block.t[size_t(g_cur)].inDevice = true;
  g_checking = true;
}
void leaveDevice() {
  g_block.t[size_t(g_cur)].inDevice = false;
  g_checking = false;
}

void syncthreads(const void* site) {
  if (g_cur < 0) fail("device call", "__syncthreads() called from host code");
  ThreadState& t = g_block.t[size_t(g_cur)];
  t.st = TState::Barrier;
  t.site = static_cast<const char*>(site);
  yieldToScheduler();
}

// ---- cp.async (emu_ptx.h) ----
namespace {
Shadow* sharedShadowOf(uintptr_t a, size_t n) {
  if (a >= uintptr_t(g_dynSmem) && a + n <= uintptr_t(g_dynSmem) + g_dynBytes) return g_dynShadow + (a - uintptr_t(g_dynSmem));
  if (a >= g_data.lo && a + n <= g_data.hi) return g_dataShadow + (a - g_data.lo);
  return nullptr;
}

void retireCopy(const AsyncCopy& c) {
  const uintptr_t a = uintptr_t(c.dst);
  Shadow* sh = sharedShadowOf(a, size_t(c.size));
  for (int i = 0; i < c.size; i++)
    sh[i].inFlight = 0;  // (set at issue in this block: a block's groups end with it)
  if (c.srcSize > 0 && !liveDeviceRange(c.src, size_t(c.srcSize)))
    fail("memcheck", "cp.async source [%p, +%d) was freed before the copy completed", static_cast<const void*>(c.src), c.srcSize);
  memcpy(c.dst, c.src, size_t(c.srcSize));
  memset(c.dst + c.srcSize, 0, size_t(c.size - c.srcSize));
  // Lands now, as a write of this thread in the current barrier interval. Its races were checked at
  // issue (and any access in between failed): only the shadow's writer is updated.
  for (int i = 0; i < c.size; i++) {
    Shadow& s = sh[i];
    s.written = 1;
    s.wEpoch = g_block.epoch;
    s.wThread = uint16_t(g_cur);
    s.atomic = 0;
  }
}
}  // namespace

void cpAsync(void* dst, const void* src, int cpSize, int srcSize) {
  if (g_cur < 0) fail("device call", "cp.async called from host code");
  const uintptr_t d = uintptr_t(dst), s = uintptr_t(src);
  if (srcSize < 0 || srcSize > cpSize) fail("cp.async check", "src-size %d is outside [0, cp-size %d]", srcSize, cpSize);
  if (d % unsigned(cpSize) || s % unsigned(cpSize))
    fail("alignment", "cp.async of %d bytes from %p to %p: both addresses must be %d-byte aligned", cpSize, src, dst, cpSize);
  if (!inArena(src)) fail("cp.async check", "cp.async source %p is not global (device) memory", src);
  if (srcSize > 0) checkAccess(src, size_t(srcSize), Access::Read);
  Shadow* sh = sharedShadowOf(d, size_t(cpSize));
  if (!sh) {
    if (d >= uintptr_t(g_dynSmem) && d < uintptr_t(g_dynSmem) + kMaxDynSmem)
      fail("memcheck", "cp.async of %d bytes to dynamic shared memory +%zu is past the launch's %zu bytes", cpSize, size_t(d - uintptr_t(g_dynSmem)),
           g_dynBytes);
    fail("cp.async check", "cp.async destination %p is not shared memory", dst);
  }
  // Issue: the bytes may be written any time from now to the wait, so the write is checked for races now,
  // and every access to them until then fails.
  sharedAccess(sh, d, size_t(cpSize), Access::Write);
  for (int i = 0; i < cpSize; i++) sh[i].inFlight = 1;
  g_block.t[size_t(g_cur)].openCopies.push_back(AsyncCopy{static_cast<char*>(dst), static_cast<const char*>(src), cpSize, srcSize});
}

void cpAsyncCommitGroup() {
  if (g_cur < 0) fail("device call", "cp.async.commit_group called from host code");
  ThreadState& t = g_block.t[size_t(g_cur)];
  t.copyGroups.push_back(std::move(t.openCopies));
  t.openCopies.clear();
}

void cpAsyncWaitGroup(int n) {
  if (g_cur < 0) fail("device call", "cp.async.wait_group called from host code");
  ThreadState& t = g_block.t[size_t(g_cur)];
  while (t.copyGroups.size() > size_t(std::max(n, 0))) {
    for (const AsyncCopy& c : t.copyGroups.front()) retireCopy(c);
    t.copyGroups.pop_front();
  }
}

void gridDepWait() {
  if (g_cur < 0) fail("device call", "griddepcontrol.wait called from host code");
  g_block.t[size_t(g_cur)].depWaited = true;
}
void gridDepLaunchDependents() {
  if (g_cur < 0) fail("device call", "griddepcontrol.launch_dependents called from host code");
}

namespace {
void completeCollective(int w0, unsigned mask) {
  Block& B = g_block;
  const Pending& first = B.pend[size_t(w0 + __builtin_ctz(mask))];
  const WarpOp op = first.op;
  if (op == WarpOp::Mma) {
    MmaLane lanes[32];
    for (int l = 0; l < 32; l++) lanes[l] = *B.pend[size_t(w0 + l)].mma;
    mmaCompute(MmaKind(first.arg), lanes);
    for (int l = 0; l < 32; l++) *B.pend[size_t(w0 + l)].mma = lanes[l];
  } else {
    uint64_t vote = 0;
    for (int l = 0; l < 32; l++)
      if (mask >> l & 1u) vote |= uint64_t(B.pend[size_t(w0 + l)].value & 1u) << l;
    for (int l = 0; l < 32; l++) {
      if (!(mask >> l & 1u)) continue;
      Pending& p = B.pend[size_t(w0 + l)];
      const int w = p.width, segBase = l & ~(w - 1), li = l & (w - 1);
      int src = l;
      switch (op) {
        case WarpOp::ShflIdx: src = segBase + (p.arg & (w - 1)); break;
        case WarpOp::ShflUp: src = li - p.arg >= 0 ? l - p.arg : l; break;
        case WarpOp::ShflDown: src = li + p.arg < w ? l + p.arg : l; break;
        case WarpOp::ShflXor: src = (li ^ p.arg) < w ? segBase + (li ^ p.arg) : l; break;
        default: break;
      }
      if (op == WarpOp::Ballot) p.result = vote;
      else if (op == WarpOp::Any) p.result = vote != 0;
      else if (op == WarpOp::All) p.result = vote == (mask & 0xffffffffu);
      else {
        if (!(mask >> src & 1u)) {
          g_cur = w0 + l;
          fail("synccheck", "shuffle reads lane %d, which is not in the mask 0x%08x (undefined value on the GPU)", src, mask);
        }
        p.result = B.pend[size_t(w0 + src)].value;
      }
    }
  }
  for (int l = 0; l < 32; l++)
    if (mask >> l & 1u) {
      B.pend[size_t(w0 + l)].on = false;
      if (B.t[size_t(w0 + l)].st == TState::Warp) B.t[size_t(w0 + l)].st = TState::Ready;
    }
}

uint64_t collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const char* site, MmaLane* mma) {
  if (g_cur < 0) fail("device call", "warp collective called from host code");
  Block& B = g_block;
  const int me = g_cur, w0 = me / 32 * 32, lane = me - w0;
  if (!(mask >> lane & 1u)) fail("synccheck", "this lane calls a warp collective (%s) with mask 0x%08x, which does not include it", site, mask);
  if (width < 1 || width > 32 || (width & (width - 1))) fail("synccheck", "shuffle width %d at %s is not a power of two ≤ 32", width, site);
  if (op == WarpOp::Mma && mask != 0xffffffffu) fail("synccheck", "mma.sync needs the full warp (%s)", site);
  for (int l = 0; l < 32; l++) {
    if (!(mask >> l & 1u)) continue;
    const int j = w0 + l;
    if (j >= B.n) fail("synccheck", "collective at %s names lane %d, past the block's %d threads", site, l, B.n);
    if (B.t[size_t(j)].st == TState::Done) {
      char buf[96];
      describeThread(buf, sizeof buf, j);
      fail("synccheck", "collective at %s (mask 0x%08x) names %s, which has exited", site, mask, buf);
    }
    const Pending& o = B.pend[size_t(j)];
    if (o.on && (o.mask != mask || o.op != op || strcmp(o.site, site) != 0)) {
      char buf[96];
      describeThread(buf, sizeof buf, j);
      fail("synccheck", "divergent warp collective: this lane is at %s (mask 0x%08x), %s at %s (mask 0x%08x)", site, mask, buf, o.site, o.mask);
    }
  }
  Pending& p = B.pend[size_t(me)];
  p = Pending{true, op, mask, value, arg, width, site, mma, 0};
  bool all = true;
  for (int l = 0; l < 32 && all; l++)
    if (mask >> l & 1u) all = B.pend[size_t(w0 + l)].on;
  if (all) {
    completeCollective(w0, mask);
  } else {
    B.t[size_t(me)].st = TState::Warp;
    B.t[size_t(me)].site = site;
    yieldToScheduler();
  }
  return B.pend[size_t(me)].result;
}
}  // namespace

uint64_t warpCollective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const void* site) {
  return collective(op, mask, value, arg, width, static_cast<const char*>(site), nullptr);
}
void syncwarp(unsigned mask, const void* site) { collective(WarpOp::Any, mask, 0, 0, 32, static_cast<const char*>(site), nullptr); }
void mmaSync(MmaKind kind, MmaLane& lane, const void* site) {
  collective(WarpOp::Mma, 0xffffffffu, 0, int(kind), 32, static_cast<const char*>(site), &lane);
}

// =============================================================================================
// The CUDA runtime API
// =============================================================================================
struct Op {
  enum Kind { Kernel, Copy, Set } kind = Kernel;
  LaunchInfo L{};
  std::shared_ptr<void> args;  // keeps L.args alive (graphs replay it)
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
  int value = 0;
  std::shared_ptr<std::vector<char>> snapshot;  // pageable host source, copied at the call
};

struct Graph {
  std::vector<Op> ops;
};
struct Stream {
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  Graph* graph = nullptr;
};
struct Event {
  int unused = 0;
};

namespace {
cudaError_t g_lastError = cudaSuccess;
std::deque<Op> g_queue;
std::vector<Stream*> g_capturing;

cudaError_t setError(cudaError_t e) {
  if (e != cudaSuccess) g_lastError = e;
  return e;
}

// A call that would synchronize (or is otherwise illegal) while a capture is open invalidates it.
cudaError_t captureViolation() {
  for (Stream* s : g_capturing)
    if (s->mode != cudaStreamCaptureModeRelaxed) {
      s->invalidated = true;
      return cudaErrorStreamCaptureUnsupported;
    }
  return cudaSuccess;
}

void execute(const Op& op) {
  switch (op.kind) {
    case Op::Kernel: runLaunch(op.L); break;
    case Op::Copy:
      g_writtenBefore.clear();  // a kernel after a copy or memset starts after it, programmatic or not
      if (!op.bytes) break;
      memmove(op.dst, op.snapshot ? op.snapshot->data() : op.src, op.bytes);
      break;
    case Op::Set:
      g_writtenBefore.clear();
      memset(op.dst, op.value, op.bytes);
      break;
  }
}

void flush() {
  while (!g_queue.empty()) {
    Op op = std::move(g_queue.front());
    g_queue.pop_front();
    execute(op);
  }
}

cudaError_t submit(Op op, cudaStream_t s) {
  initOnce();
  if (s && s->capturing) {
    if (s->invalidated) return cudaErrorStreamCaptureInvalidated;
    s->graph->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  if (!s)  // the legacy default stream while another stream captures
    for (Stream* c : g_capturing)
      if (c->mode != cudaStreamCaptureModeRelaxed) {
        c->invalidated = true;
        return cudaErrorStreamCaptureImplicit;
      }
  g_queue.push_back(std::move(op));
  return cudaSuccess;
}

bool capturing(cudaStream_t s) { return s && s->capturing; }

}  // namespace

void submitLaunch(const LaunchInfo& info, cudaStream_t s) {
  initOnce();
  std::shared_ptr<void> args(info.args, info.destroy);
  const dim3 b = info.block, g = info.grid;
  const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 ||
      g.x > 2147483647u) {
    setError(cudaErrorInvalidConfiguration);
    return;
  }
  const int bound = launchBoundOf(info.kernel);
  if (bound && threads > (unsigned long long)bound) {
    fprintf(stderr, "seventy-emu: launch of %s (%s:%d) with %llu threads per block exceeds its __launch_bounds__(%d)\n", info.name, info.file,
            info.line, threads, bound);
    setError(cudaErrorLaunchOutOfResources);
    return;
  }
  const auto it = g_funcAttrs.find(info.kernel);
  const int maxDyn = it == g_funcAttrs.end() ? 48 * 1024 : it->second.maxDynSmem;
  if (info.smem > size_t(maxDyn)) {
    fprintf(stderr, "seventy-emu: launch of %s (%s:%d) asks for %zu bytes of dynamic shared memory; the kernel allows %d%s\n", info.name,
            info.file, info.line, info.smem, maxDyn, maxDyn == 48 * 1024 ? " (48 KB without cudaFuncAttributeMaxDynamicSharedMemorySize)" : "");
    setError(cudaErrorInvalidValue);
    return;
  }
  Op op;
  op.kind = Op::Kernel;
  op.L = info;
  op.args = std::move(args);
  if (cudaError_t e = submit(std::move(op), s)) setError(e);
}

}  // namespace emu

using namespace emu;

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return setError(d == 0 ? cudaSuccess : cudaErrorInvalidValue); }
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return setError(cudaErrorInvalidValue);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "seventy-emu (CPU emulation of an sm_90 device)");
  p->totalGlobalMem = kTotalDeviceBytes;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = kMaxDynSmem;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;  // as an H100 SXM: the engine sizes split-K from it
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, int, int) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  initOnce();
  *totalBytes = kTotalDeviceBytes;
  *freeBytes = kTotalDeviceBytes - std::min(g_deviceBytes, kTotalDeviceBytes);
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_lastError;
  g_lastError = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_lastError; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define N(x) \
  case x: return #x;
    N(cudaSuccess) N(cudaErrorInvalidValue) N(cudaErrorMemoryAllocation) N(cudaErrorInvalidConfiguration) N(cudaErrorInvalidDevicePointer)
    N(cudaErrorInvalidMemcpyDirection) N(cudaErrorInsufficientDriver) N(cudaErrorNoDevice) N(cudaErrorInvalidResourceHandle)
    N(cudaErrorNotReady) N(cudaErrorLaunchOutOfResources) N(cudaErrorNotSupported) N(cudaErrorStreamCaptureUnsupported)
    N(cudaErrorStreamCaptureInvalidated) N(cudaErrorStreamCaptureWrongThread) N(cudaErrorStreamCaptureImplicit) N(cudaErrorUnknown)
#undef N
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return cudaGetErrorName(e);
  }
}
cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t e = captureViolation()) return setError(e);
  flush();
  return cudaSuccess;
}
cudaError_t cudaDeviceReset() {
  flush();
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  initOnce();
  *p = nullptr;
  if (cudaError_t e = captureViolation()) return setError(e);
  if (bytes == 0) return cudaSuccess;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t rounded = (bytes + 255) / 256 * 256;
  const size_t span = (rounded + page - 1) / page * page;
  if (g_deviceBytes + bytes > kTotalDeviceBytes || g_arenaUsed + span + kGuardBytes > kArenaBytes) return setError(cudaErrorMemoryAllocation);
  char* region = g_arena + g_arenaUsed + kGuardBytes;
  g_arenaUsed += span + kGuardBytes;
  if (mprotect(region, span, PROT_READ | PROT_WRITE) != 0) return setError(cudaErrorMemoryAllocation);
  // End the allocation near its last page's end, so host code running past it faults on the guard.
  char* base = region + (span - rounded);
  memset(base, 0xff, rounded);  // fresh device memory is garbage; NaN for floats and bf16
  g_allocs[uintptr_t(base)] = Alloc{bytes, true};
  g_deviceBytes += bytes;
  *p = base;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = captureViolation()) return setError(e);
  flush();  // cudaFree synchronizes
  auto it = g_allocs.find(uintptr_t(p));
  if (it == g_allocs.end() || !it->second.live) return setError(cudaErrorInvalidValue);
  it->second.live = false;
  g_deviceBytes -= it->second.bytes;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = uintptr_t(p) / page * page, hi = (uintptr_t(p) + it->second.bytes + page - 1) / page * page;
  mmap(reinterpret_cast<void*>(lo), hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  initOnce();
  void* v = aligned_alloc(4096, (std::max<size_t>(bytes, 1) + 4095) / 4096 * 4096);
  if (!v) return setError(cudaErrorMemoryAllocation);
  g_pinned[uintptr_t(v)] = bytes;
  *p = v;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, 0); }
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  flush();
  auto it = g_pinned.find(uintptr_t(p));
  if (it == g_pinned.end()) return setError(cudaErrorInvalidValue);
  g_pinned.erase(it);
  free(p);
  return cudaSuccess;
}

namespace {
cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s, bool async) {
  initOnce();
  if (bytes == 0) return cudaSuccess;
  const bool dDev = inArena(dst), sDev = inArena(src);
  if (kind == cudaMemcpyDefault) kind = cudaMemcpyKind((sDev ? 2 : 0) + (dDev ? 1 : 0) == 0 ? 0 : sDev ? (dDev ? 3 : 2) : 1);
  const bool wantD = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool wantS = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (wantD != dDev || wantS != sDev) return setError(cudaErrorInvalidValue);
  if ((dDev && !liveDeviceRange(dst, bytes)) || (sDev && !liveDeviceRange(src, bytes))) return setError(cudaErrorInvalidValue);
  Op op;
  op.kind = Op::Copy;
  op.dst = dst;
  op.src = src;
  op.bytes = bytes;
  if (!async) {
    if (cudaError_t e = captureViolation()) return setError(e);
    flush();
    execute(op);
    return cudaSuccess;
  }
  // Pageable host memory: the source is staged at the call, a pageable destination is written before
  // the call returns (both as the CUDA runtime does); pinned memory is read / written when the copy runs.
  if (!capturing(s)) {
    if (!sDev && !isPinned(src, bytes)) op.snapshot = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    if (!dDev && !isPinned(dst, bytes)) {
      if (cudaError_t e = submit(std::move(op), s)) return setError(e);
      flush();
      return cudaSuccess;
    }
  }
  return setError(submit(std::move(op), s));
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) { return copy(dst, src, bytes, kind, nullptr, false); }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  return copy(dst, src, bytes, kind, s, true);
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  initOnce();
  if (bytes == 0) return cudaSuccess;
  if (!liveDeviceRange(p, bytes)) return setError(cudaErrorInvalidValue);
  Op op;
  op.kind = Op::Set;
  op.dst = p;
  op.value = value;
  op.bytes = bytes;
  return setError(submit(std::move(op), s));
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (cudaError_t e = captureViolation()) return setError(e);
  if (cudaError_t e = cudaMemsetAsync(p, value, bytes, nullptr)) return e;
  flush();
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  initOnce();
  *s = new Stream;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return setError(cudaErrorInvalidResourceHandle);
  flush();
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (capturing(s)) {
    s->invalidated = true;
    return setError(cudaErrorStreamCaptureUnsupported);
  }
  if (!s)
    if (cudaError_t e = captureViolation()) return setError(e);
  flush();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }  // one in-order queue
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new Event;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  if (cudaError_t e = captureViolation()) return setError(e);
  flush();
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t) {
  flush();
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  *ms = 0;
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  initOnce();
  if (!s) return setError(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot be captured
  if (s->capturing) return setError(cudaErrorInvalidValue);
  s->capturing = true;
  s->invalidated = false;
  s->mode = mode;
  s->graph = new Graph;
  g_capturing.push_back(s);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s || !s->capturing) return setError(cudaErrorInvalidValue);
  s->capturing = false;
  g_capturing.erase(std::find(g_capturing.begin(), g_capturing.end(), s));
  if (s->invalidated) {
    delete s->graph;
    s->graph = nullptr;
    *g = nullptr;
    return setError(cudaErrorStreamCaptureInvalidated);
  }
  *g = s->graph;
  s->graph = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
  if (!g) return setError(cudaErrorInvalidValue);
  *exec = new Graph(*g);
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return setError(cudaErrorInvalidValue);
  if (g_trace) fprintf(stderr, "seventy-emu: graph launch (%zu nodes)\n", exec->ops.size());
  for (const Op& op : exec->ops)
    if (cudaError_t e = submit(op, s)) return setError(e);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > kMaxDynSmem) return setError(cudaErrorInvalidValue);
    g_funcAttrs[func].maxDynSmem = value;
  }
  return cudaSuccess;
}
