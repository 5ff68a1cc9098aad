//! The interrupt descriptor table: every CPU exception has a handler.
//!
//! An exception in this kernel is always a bug (there is no user space to blame), so each
//! handler prints what a developer needs to find it — vector, name, error code, RIP, RSP,
//! and CR2 for page faults — and then ends the run as a failure through [`crate::crash`],
//! which also marks the running in-kernel test as FAILED. Page faults go through a hook first
//! because page migration (a later subsystem) turns some of them into waits, not crashes.

use spin::Once;
use x86_64::{
    registers::control::Cr2,
    structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode},
};

use super::gdt::{DOUBLE_FAULT_IST, NMI_IST};

static IDT: Once<InterruptDescriptorTable> = Once::new();

fn report(vector: u8, name: &str, error: Option<u64>, frame: &InterruptStackFrame) -> ! {
    let rip = frame.instruction_pointer.as_u64();
    let rsp = frame.stack_pointer.as_u64();
    match error {
        Some(code) => crate::crash::die(format_args!(
            "CPU exception {vector} ({name}), error code {code:#x}, RIP {rip:#018x}, RSP {rsp:#018x}"
        )),
        None => crate::crash::die(format_args!(
            "CPU exception {vector} ({name}), RIP {rip:#018x}, RSP {rsp:#018x}"
        )),
    }
}

macro_rules! handler {
    ($fn:ident, $vec:expr, $name:expr) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) {
            report($vec, $name, None, &frame)
        }
    };
    ($fn:ident, $vec:expr, $name:expr, error) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) {
            report($vec, $name, Some(code), &frame)
        }
    };
    ($fn:ident, $vec:expr, $name:expr, diverging_error) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) -> ! {
            report($vec, $name, Some(code), &frame)
        }
    };
    ($fn:ident, $vec:expr, $name:expr, diverging) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) -> ! {
            report($vec, $name, None, &frame)
        }
    };
}

handler!(divide_error, 0, "divide error");
handler!(debug, 1, "debug");
handler!(nmi, 2, "non-maskable interrupt");
handler!(breakpoint, 3, "breakpoint");
handler!(overflow, 4, "overflow");
handler!(bound_range, 5, "bound range exceeded");
handler!(invalid_opcode, 6, "invalid opcode");
handler!(device_not_available, 7, "device not available");
handler!(double_fault, 8, "double fault", diverging_error);
handler!(invalid_tss, 10, "invalid TSS", error);
handler!(segment_not_present, 11, "segment not present", error);
handler!(stack_segment, 12, "stack-segment fault", error);
handler!(general_protection, 13, "general protection fault", error);
handler!(x87_fp, 16, "x87 floating-point exception");
handler!(alignment_check, 17, "alignment check", error);
handler!(machine_check, 18, "machine check", diverging);
handler!(simd_fp, 19, "SIMD floating-point exception");
handler!(virtualization, 20, "virtualization exception");
handler!(cp_protection, 21, "control protection exception", error);
handler!(hv_injection, 28, "hypervisor injection exception");
handler!(vmm_communication, 29, "VMM communication exception", error);
handler!(security, 30, "security exception", error);

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let addr = Cr2::read_raw();
    let interrupts_were_enabled = frame
        .cpu_flags
        .contains(x86_64::registers::rflags::RFlags::INTERRUPT_FLAG);
    if crate::fault::handle_page_fault(addr, code, interrupts_were_enabled) {
        return;
    }
    let rip = frame.instruction_pointer.as_u64();
    let rsp = frame.stack_pointer.as_u64();
    crate::crash::die(format_args!(
        "CPU exception 14 (page fault), error code {:#x} ({:?}), CR2 {addr:#018x}, RIP {rip:#018x}, RSP {rsp:#018x}",
        code.bits(),
        code
    ))
}

fn build() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    idt.divide_error.set_handler_fn(divide_error);
    idt.debug.set_handler_fn(debug);
    // SAFETY: NMI_IST and DOUBLE_FAULT_IST name IST slots that gdt::CpuTables::load fills
    // with dedicated stacks on every CPU before it loads this IDT.
    unsafe {
        idt.non_maskable_interrupt
            .set_handler_fn(nmi)
            .set_stack_index(NMI_IST);
        idt.double_fault
            .set_handler_fn(double_fault)
            .set_stack_index(DOUBLE_FAULT_IST);
        idt.machine_check
            .set_handler_fn(machine_check)
            .set_stack_index(NMI_IST);
    }
    idt.breakpoint.set_handler_fn(breakpoint);
    idt.overflow.set_handler_fn(overflow);
    idt.bound_range_exceeded.set_handler_fn(bound_range);
    idt.invalid_opcode.set_handler_fn(invalid_opcode);
    idt.device_not_available
        .set_handler_fn(device_not_available);
    idt.invalid_tss.set_handler_fn(invalid_tss);
    idt.segment_not_present.set_handler_fn(segment_not_present);
    idt.stack_segment_fault.set_handler_fn(stack_segment);
    idt.general_protection_fault
        .set_handler_fn(general_protection);
    idt.page_fault.set_handler_fn(page_fault);
    idt.x87_floating_point.set_handler_fn(x87_fp);
    idt.alignment_check.set_handler_fn(alignment_check);
    idt.simd_floating_point.set_handler_fn(simd_fp);
    idt.virtualization.set_handler_fn(virtualization);
    idt.cp_protection_exception.set_handler_fn(cp_protection);
    idt.hv_injection_exception.set_handler_fn(hv_injection);
    idt.vmm_communication_exception
        .set_handler_fn(vmm_communication);
    idt.security_exception.set_handler_fn(security);
    idt[super::apic::TIMER_VECTOR].set_handler_fn(super::smp::timer_irq);
    idt[super::smp::CALL_VECTOR].set_handler_fn(super::smp::call_ipi);
    idt[super::smp::SHOOTDOWN_VECTOR].set_handler_fn(super::smp::shootdown_ipi);
    idt[super::smp::WAKE_VECTOR].set_handler_fn(super::smp::wake_ipi);
    idt[super::apic::SPURIOUS_VECTOR].set_handler_fn(super::smp::spurious_irq);
    idt
}

/// Load the shared IDT on the current CPU (building it on first use).
pub fn load() {
    IDT.call_once(build).load();
}
