//! The Go runtime's struct offsets read from its own machine code, for binaries without DWARF
//! (`-ldflags=-w`, as most release builds and distributions' packages are linked).
//!
//! A few assembly functions of the runtime (`runtime/asm_amd64.s`, `sys_linux_amd64.s`, the
//! same since Go 1.17 brought the register ABI) use the fields a profiler needs with constant
//! displacements, in a fixed order:
//!
//! - `runtime.systemstack`: `MOVQ g_m(AX), BX`; `CMPQ m_gsignal(BX), AX`; `MOVQ m_g0(BX), DX`;
//!   `CMPQ m_curg(BX), AX`; after the switch `MOVQ (g_sched+gobuf_sp)(DX), BX` (loaded into
//!   SP itself in later versions).
//! - `gosave_systemstack_switch`: `MOVQ R9, (g_sched+gobuf_pc)(R14)`, then `gobuf_sp` the same
//!   way, and `MOVQ BP, (g_sched+gobuf_bp)(R14)`.
//! - `runtime.nanotime1`: `MOVQ m_vdsoPC(BX), CX`, `MOVQ m_vdsoSP(BX), DX`.
//!
//! Each is found by its exact encoding (REX.W, opcode, ModRM naming both registers) in the
//! function's bytes, and the result is only trusted if it has the shape every Go version's
//! structs have (gobuf's pc right after sp and bp five or six words on, as gobuf lost `ret`
//! in Go 1.25; g0 first in m, gsignal before curg before vdsoSP, vdsoPC right after it; the
//! same sched.sp in both functions). Only Go 1.19's code is tested on real binaries here;
//! later forms from their sources. The bytes are untrusted: reads are bounded by the slices
//! given, and anything unexpected gives `None`.

use crate::go_runtime::GoRuntimeLayout;

/// x86-64 registers, by their 4-bit encoding.
const AX: u8 = 0;
const CX: u8 = 1;
const DX: u8 = 2;
const BX: u8 = 3;
const SP: u8 = 4;
const BP: u8 = 5;
const R9: u8 = 9;
const R14: u8 = 14;

/// `MOV r64, r/m64` and `CMP r64, r/m64` (register from memory), `MOV r/m64, r64` (to memory).
const MOV_LOAD: u8 = 0x8b;
const CMP_LOAD: u8 = 0x3b;
const MOV_STORE: u8 = 0x89;

/// `g.stack.hi`: `stack {lo, hi}` starts `g` in every Go version (assembly relies on it).
const G_STACK_HI: u64 = 8;

/// The code of the three functions the offsets are read from.
pub(crate) struct RuntimeCode<'a> {
    pub systemstack: &'a [u8],
    pub gosave_systemstack_switch: &'a [u8],
    pub nanotime1: &'a [u8],
}

/// The layout the functions' instructions give, if they are there and consistent.
pub(crate) fn layout(code: &RuntimeCode<'_>) -> Option<GoRuntimeLayout> {
    let systemstack = code.systemstack;
    let g_m = *displacements(systemstack, MOV_LOAD, BX, AX).first()?;
    let [m_gsignal, m_curg] = displacements(systemstack, CMP_LOAD, AX, BX)[..] else {
        return None;
    };
    let m_g0 = *displacements(systemstack, MOV_LOAD, DX, BX).first()?;
    let sched_sp = *displacements(systemstack, MOV_LOAD, BX, DX)
        .first()
        .or(displacements(systemstack, MOV_LOAD, SP, DX).first())?;
    let saved = displacements(code.gosave_systemstack_switch, MOV_STORE, R9, R14);
    let (&g_sched_pc, &g_sched_sp) = (saved.first()?, saved.get(1)?);
    let g_sched_bp = *displacements(code.gosave_systemstack_switch, MOV_STORE, BP, R14).first()?;
    let m_vdso_pc = *displacements(code.nanotime1, MOV_LOAD, CX, BX).first()?;
    let m_vdso_sp = *displacements(code.nanotime1, MOV_LOAD, DX, BX).first()?;
    let layout = GoRuntimeLayout {
        g_m,
        g_sched_sp,
        g_sched_pc,
        g_sched_bp,
        g_stack_hi: G_STACK_HI,
        m_g0,
        m_curg,
        m_gsignal,
        m_vdso_sp,
        m_vdso_pc,
    };
    let bp_after_sp = g_sched_bp.checked_sub(g_sched_sp)?;
    let shaped = sched_sp == g_sched_sp
        && g_sched_pc == g_sched_sp.checked_add(8)?
        && (bp_after_sp == 40 || bp_after_sp == 48)
        && m_g0 == 0
        && m_vdso_pc == m_vdso_sp.checked_add(8)?
        && g_m > G_STACK_HI
        && g_m < g_sched_sp
        && 0 < m_gsignal
        && m_gsignal < m_curg
        && m_curg < m_vdso_sp;
    shaped.then_some(layout)
}

/// The displacements of the 64-bit `opcode` instructions in `code` whose ModRM names register
/// `reg` and memory at `[base + displacement]` (no SIB, no RIP-relative), in code order.
fn displacements(code: &[u8], opcode: u8, reg: u8, base: u8) -> Vec<u64> {
    let rex = 0x48 | ((reg >> 3) << 2) | (base >> 3);
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(window) = code.get(at..) {
        if window.len() < 3 {
            break;
        }
        if window[0] == rex && window[1] == opcode {
            if let Some(displacement) = memory_operand(&window[2..], reg & 7, base & 7) {
                found.push(displacement);
            }
        }
        at += 1;
    }
    found
}

/// The displacement of ModRM byte `bytes[0]` (and what follows) if it names `reg` and
/// `[base + displacement]`; None for another form.
fn memory_operand(bytes: &[u8], reg: u8, base: u8) -> Option<u64> {
    let modrm = *bytes.first()?;
    let (mode, modrm_reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    // rm 100 is a SIB byte; rm 101 with mode 00 is RIP-relative.
    if modrm_reg != reg || rm != base || rm == 4 || (mode == 0 && rm == 5) {
        return None;
    }
    match mode {
        0 => Some(0),
        1 => u64::try_from(i8::from_le_bytes([*bytes.get(1)?])).ok(),
        2 => u64::try_from(i32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?)).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go 1.19's functions, as `go tool objdump` shows them (their start).
    const SYSTEMSTACK: &[u8] = &[
        0x48, 0x8b, 0x7c, 0x24, 0x08, // MOVQ 0x8(SP), DI
        0x64, 0x48, 0x8b, 0x04, 0x25, 0xe0, 0xff, 0xff, 0xff, // MOVQ FS:-0x20, AX
        0x48, 0x8b, 0x58, 0x30, // MOVQ 0x30(AX), BX
        0x48, 0x3b, 0x43, 0x50, // CMPQ 0x50(BX), AX
        0x74, 0x5b, // JE
        0x48, 0x8b, 0x13, // MOVQ 0(BX), DX
        0x48, 0x39, 0xd0, // CMPQ DX, AX
        0x74, 0x53, // JE
        0x48, 0x3b, 0x83, 0xc0, 0x00, 0x00, 0x00, // CMPQ 0xc0(BX), AX
        0x75, 0x52, // JNE
        0xe8, 0xd2, 0xf1, 0xff, 0xff, // CALL gosave_systemstack_switch
        0x64, 0x48, 0x89, 0x14, 0x25, 0xe0, 0xff, 0xff, 0xff, // MOVQ DX, FS:-0x20
        0x49, 0x89, 0xd6, // MOVQ DX, R14
        0x48, 0x8b, 0x5a, 0x38, // MOVQ 0x38(DX), BX
        0x48, 0x89, 0xdc, // MOVQ BX, SP
    ];
    const GOSAVE: &[u8] = &[
        0x4c, 0x8d, 0x0d, 0xd9, 0x0d, 0x00, 0x00, // LEAQ systemstack_switch, R9
        0x4d, 0x89, 0x4e, 0x40, // MOVQ R9, 0x40(R14)
        0x4c, 0x8d, 0x4c, 0x24, 0x08, // LEAQ 0x8(SP), R9
        0x4d, 0x89, 0x4e, 0x38, // MOVQ R9, 0x38(R14)
        0x49, 0xc7, 0x46, 0x58, 0x00, 0x00, 0x00, 0x00, // MOVQ $0, 0x58(R14)
        0x49, 0x89, 0x6e, 0x68, // MOVQ BP, 0x68(R14)
        0xc3, // RET
    ];
    const NANOTIME1: &[u8] = &[
        0x49, 0x89, 0xe4, // MOVQ SP, R12
        0x49, 0x8b, 0x5e, 0x30, // MOVQ 0x30(R14), BX
        0x48, 0x8b, 0x8b, 0x28, 0x03, 0x00, 0x00, // MOVQ 0x328(BX), CX
        0x48, 0x8b, 0x93, 0x20, 0x03, 0x00, 0x00, // MOVQ 0x320(BX), DX
    ];

    fn code<'a>(systemstack: &'a [u8], gosave: &'a [u8], nanotime1: &'a [u8]) -> RuntimeCode<'a> {
        RuntimeCode {
            systemstack,
            gosave_systemstack_switch: gosave,
            nanotime1,
        }
    }

    #[test]
    fn go_1_19_s_offsets_come_out_of_its_code() {
        let layout = layout(&code(SYSTEMSTACK, GOSAVE, NANOTIME1)).unwrap();
        assert_eq!(
            layout,
            GoRuntimeLayout {
                g_m: 0x30,
                g_sched_sp: 0x38,
                g_sched_pc: 0x40,
                g_sched_bp: 0x68,
                g_stack_hi: 8,
                m_g0: 0,
                m_curg: 0xc0,
                m_gsignal: 0x50,
                m_vdso_sp: 0x320,
                m_vdso_pc: 0x328,
            }
        );
    }

    #[test]
    fn later_versions_forms_are_read_too() {
        // systemstack loading the goroutine's sched.sp straight into SP (`48 8b 62 38`), and a
        // gobuf without `ret` (bp five words after sp).
        let mut systemstack = SYSTEMSTACK.to_vec();
        let load = systemstack
            .windows(4)
            .position(|w| w == [0x48, 0x8b, 0x5a, 0x38])
            .unwrap();
        systemstack[load + 2] = 0x62;
        let mut gosave = GOSAVE.to_vec();
        let bp = gosave
            .windows(4)
            .position(|w| w == [0x49, 0x89, 0x6e, 0x68])
            .unwrap();
        gosave[bp + 3] = 0x60;
        let layout = layout(&code(&systemstack, &gosave, NANOTIME1)).unwrap();
        assert_eq!((layout.g_sched_sp, layout.g_sched_bp), (0x38, 0x60));
    }

    #[test]
    fn code_of_another_shape_gives_none_never_a_panic() {
        // A function missing, cut short, or with a field where no Go version has it.
        assert_eq!(layout(&code(&[], GOSAVE, NANOTIME1)), None);
        assert_eq!(layout(&code(SYSTEMSTACK, &GOSAVE[..12], NANOTIME1)), None);
        assert_eq!(layout(&code(SYSTEMSTACK, GOSAVE, &NANOTIME1[..14])), None);
        let mut moved = NANOTIME1.to_vec();
        moved[10] = 0x30; // vdsoPC no longer right after vdsoSP
        assert_eq!(layout(&code(SYSTEMSTACK, GOSAVE, &moved)), None);
        // gsignal and curg read the wrong way round.
        let mut swapped = SYSTEMSTACK.to_vec();
        let gsignal = swapped
            .windows(4)
            .position(|w| w == [0x48, 0x3b, 0x43, 0x50])
            .unwrap();
        let curg = swapped
            .windows(3)
            .position(|w| w == [0x48, 0x3b, 0x83])
            .unwrap();
        swapped[gsignal + 3] = 0xc0;
        swapped[curg + 3..curg + 7].copy_from_slice(&0x50u32.to_le_bytes());
        assert_eq!(layout(&code(&swapped, GOSAVE, NANOTIME1)), None);
        // Every cut and every flipped byte of the three functions.
        for (which, original) in [SYSTEMSTACK, GOSAVE, NANOTIME1].into_iter().enumerate() {
            for cut in 0..original.len() {
                let mut bytes = [SYSTEMSTACK.to_vec(), GOSAVE.to_vec(), NANOTIME1.to_vec()];
                bytes[which].truncate(cut);
                let _ = layout(&code(&bytes[0], &bytes[1], &bytes[2]));
                let mut bytes = [SYSTEMSTACK.to_vec(), GOSAVE.to_vec(), NANOTIME1.to_vec()];
                if let Some(byte) = bytes[which].get_mut(cut) {
                    *byte = !*byte;
                }
                let _ = layout(&code(&bytes[0], &bytes[1], &bytes[2]));
            }
        }
    }

    #[test]
    fn operands_are_matched_by_their_exact_form() {
        // disp32 and negative disp8 forms; a SIB or RIP-relative form is not a match.
        assert_eq!(
            displacements(&[0x48, 0x8b, 0x98, 0x00, 0x01, 0, 0], MOV_LOAD, BX, AX),
            [0x100]
        );
        assert_eq!(
            displacements(&[0x48, 0x8b, 0x58, 0xf8], MOV_LOAD, BX, AX),
            []
        );
        assert_eq!(
            displacements(&[0x48, 0x8b, 0x1c, 0x24], MOV_LOAD, BX, 4),
            []
        );
        assert_eq!(
            displacements(&[0x48, 0x8b, 0x1d, 1, 2, 3, 4], MOV_LOAD, BX, BP),
            []
        );
        // The register pair in the REX prefix: R9 and R14 need both extension bits.
        assert_eq!(
            displacements(&[0x49, 0x89, 0x4e, 0x40], MOV_STORE, R9, R14),
            []
        );
    }
}
