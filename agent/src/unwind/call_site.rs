//! Whether a return address read from live stack memory is a call into the function below it.
//!
//! Frames completed from the live stack (see `live`) may be stale: a thread that returned and
//! went down another path leaves the old frames below its new ones, and an unwind that crosses
//! from old to new frames finds return addresses that are all real code, just not one stack.
//! At the seam the caller's call instruction does not call the callee. A direct call (`call
//! rel32`, `E8`, what compilers emit for calls within a binary) names its target: it must be
//! the start of the callee's function, or lie in another module (a PLT stub, a thunk). Anything
//! else — a tail call in between included — ends the unwind as truncated: a stack is dropped
//! rather than made up. Indirect calls name no target and are let through.

use super::live::LiveMemory;
use super::modules::ModuleSet;

/// `call rel32`: the opcode and its 4-byte displacement, right before the return address.
const CALL_REL32: u8 = 0xE8;
const CALL_REL32_LEN: u64 = 5;

/// Whether the instruction before `return_address` could have called the function that holds
/// `callee` (a lookup address in it).
pub fn calls_into(
    live: &LiveMemory,
    modules: &ModuleSet,
    return_address: u64,
    callee: u64,
) -> bool {
    let Some(at) = return_address.checked_sub(CALL_REL32_LEN) else {
        return false;
    };
    let mut call = [0u8; CALL_REL32_LEN as usize];
    if !live.read(at, &mut call) {
        return false;
    }
    if call[0] != CALL_REL32 {
        // An indirect call (or bytes that merely look like none): nothing to check it against.
        return true;
    }
    let displacement = i32::from_le_bytes([call[1], call[2], call[3], call[4]]);
    let target = return_address.wrapping_add_signed(i64::from(displacement));
    direct_target_fits(modules, target, callee)
}

/// A direct call's `target` fits `callee` if it is the start of the callee's function, or
/// outside the callee's module (reached through a stub).
fn direct_target_fits(modules: &ModuleSet, target: u64, callee: u64) -> bool {
    // Real addresses, as unwound: the modules mapped now, not the names of relocated ones.
    let Some(module) = modules.mapped_at(callee) else {
        return false;
    };
    if !module.avma.contains(&target) {
        return true;
    }
    let start_of = |avma: u64| module.object.function_start(avma.wrapping_sub(module.bias));
    match (start_of(target), start_of(callee)) {
        (Some(target_start), Some(callee_start)) => target_start == callee_start,
        // No unwind entry for one of them (a stub within the module, e.g. its PLT): let through.
        _ => true,
    }
}
