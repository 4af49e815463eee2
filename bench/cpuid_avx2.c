/* Make this process see an x86 CPU without AVX-512 and without VNNI (an AVX2 + FMA CPU).
 *
 * Loaded with LD_PRELOAD by bench/avx2_only.py. Linux's CPUID faulting (arch_prctl
 * ARCH_SET_CPUID, the "cpuid_fault" flag) makes every CPUID instruction raise SIGSEGV; the
 * handler runs the real CPUID, clears the AVX-512, VNNI and AMX bits of leaf 7 and returns
 * the result as if CPUID had. Every library that dispatches on CPUID after start-up (ONNX
 * Runtime's MLAS, oneDNN in torch, numpy) then picks its AVX2 kernels, which run natively.
 * The setting is inherited by threads and child processes made by fork, not by exec.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012

/* leaf 7 subleaf 0: EBX AVX512F DQ IFMA PF ER CD BW VL; ECX VBMI VBMI2 VNNI BITALG VPOPCNTDQ;
 * EDX 4VNNIW 4FMAPS VP2INTERSECT AMX-BF16 FP16 AMX-TILE AMX-INT8 */
#define L7_EBX ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | \
                (1u << 30) | (1u << 31))
#define L7_ECX ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define L7_EDX ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | \
                (1u << 25))
/* leaf 7 subleaf 1: EAX AVX-VNNI AVX512_BF16 AVX-IFMA; EDX AVX-VNNI-INT8 AVX-NE-CONVERT */
#define L71_EAX ((1u << 4) | (1u << 5) | (1u << 23))
#define L71_EDX ((1u << 4) | (1u << 5))

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void on_fault(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    (void)info;
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: die as without this library */
        signal(sig, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~L7_EBX;
        c &= ~L7_ECX;
        d &= ~L7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~L71_EAX;
        d &= ~L71_EDX;
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void mask_cpuid(void) {
    struct sigaction action = {0};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "cpuid_avx2: CPUID faulting unavailable (no cpuid_fault flag?)\n");
        exit(3);
    }
}
