/* LD_PRELOAD helper for bench/cpuid_mask.py: answers the CPUID instructions patched to UD0 in a library copy with
 * the real answer minus the instruction sets of newer CPUs, so that library dispatches as on an AVX2-only CPU. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

/* Leaf 7 sub-leaf 0: EBX avx512f dq ifma pf er cd bw vl; ECX avx512_vbmi vbmi2 vnni bitalg vpopcntdq;
 * EDX avx512_4vnniw 4fmaps vp2intersect amx_bf16 avx512_fp16 amx_tile amx_int8. Sub-leaf 1: EAX avx_vnni avx512_bf16
 * avx_ifma. */
#define LEAF7_EBX ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define LEAF7_ECX ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define LEAF7_EDX ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25))
#define LEAF7_1_EAX ((1u << 4) | (1u << 5) | (1u << 23))

static void on_sigill(int signum, siginfo_t *info, void *context) {
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    (void)info;
    if (ip[0] != 0x0f || ip[1] != 0xff) { /* not a patched CPUID: the default action, as without this helper */
        signal(signum, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)regs[REG_RAX], sub = (unsigned)regs[REG_RCX], a, b, c, d;
    __cpuid_count(leaf, sub, a, b, c, d);
    if (leaf == 7 && sub == 0) {
        b &= ~LEAF7_EBX;
        c &= ~LEAF7_ECX;
        d &= ~LEAF7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~LEAF7_1_EAX;
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction action = {0};
    action.sa_sigaction = on_sigill;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGILL, &action, 0);
}
