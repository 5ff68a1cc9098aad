//! Segmentation: a GDT with kernel code/data segments and a TSS per CPU.
//!
//! Long mode ignores most of segmentation, but the TSS still matters: its Interrupt Stack
//! Table gives the double-fault (and NMI/machine-check) handlers a known-good stack, so a
//! kernel stack overflow turns into a readable report instead of a triple fault. Each CPU
//! needs its own GDT and TSS (the TSS descriptor is marked busy when loaded), so the tables
//! live in a [`CpuTables`] value that the SMP code instantiates per CPU; the boot CPU's
//! lives in a static.

use core::ptr::addr_of;

use x86_64::{
    VirtAddr,
    instructions::{
        segmentation::{CS, DS, ES, SS, Segment},
        tables::load_tss,
    },
    structures::{
        gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector},
        tss::TaskStateSegment,
    },
};

/// IST slot used by the double-fault handler.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot used by NMI and machine-check handlers.
pub const NMI_IST: u16 = 1;

/// Bytes in each IST stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// One CPU's descriptor tables and emergency stacks.
#[repr(C, align(16))]
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
    code: SegmentSelector,
    data: SegmentSelector,
    tss_sel: SegmentSelector,
    ist_stacks: [[u8; IST_STACK_SIZE]; 2],
}

impl CpuTables {
    /// Empty tables; [`CpuTables::load`] fills and activates them.
    pub const fn new() -> Self {
        CpuTables {
            gdt: GlobalDescriptorTable::new(),
            tss: TaskStateSegment::new(),
            code: SegmentSelector(0),
            data: SegmentSelector(0),
            tss_sel: SegmentSelector(0),
            ist_stacks: [[0; IST_STACK_SIZE]; 2],
        }
    }

    /// Build the GDT and TSS in place and load them on the current CPU.
    ///
    /// Takes `&'static mut` because the CPU keeps pointing at the tables for the rest of
    /// its life; they must never move or be freed.
    pub fn load(&'static mut self) {
        for (slot, stack) in [DOUBLE_FAULT_IST, NMI_IST]
            .into_iter()
            .zip(self.ist_stacks.iter())
        {
            let top = VirtAddr::from_ptr(stack.as_ptr()) + IST_STACK_SIZE as u64;
            // Stacks grow down; keep the top 16-byte aligned as the ABI expects.
            self.tss.interrupt_stack_table[slot as usize] = top.align_down(16u64);
        }
        self.code = self.gdt.append(Descriptor::kernel_code_segment());
        self.data = self.gdt.append(Descriptor::kernel_data_segment());
        // SAFETY: `self` is 'static, so the TSS outlives every use the CPU makes of it.
        let tss: &'static TaskStateSegment = unsafe { &*addr_of!(self.tss) };
        self.tss_sel = self.gdt.append(Descriptor::tss_segment(tss));
        // SAFETY: as above, the GDT is 'static and is never modified after this point.
        let gdt: &'static GlobalDescriptorTable = unsafe { &*addr_of!(self.gdt) };
        gdt.load();
        // SAFETY: the selectors were just created in the GDT loaded above and describe a
        // 64-bit code segment, a data segment and an available TSS respectively.
        unsafe {
            CS::set_reg(self.code);
            DS::set_reg(self.data);
            ES::set_reg(self.data);
            SS::set_reg(self.data);
            load_tss(self.tss_sel);
        }
    }
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}

/// The boot CPU's tables.
static mut BSP_TABLES: CpuTables = CpuTables::new();

/// Load the boot CPU's GDT and TSS. Call exactly once, first thing at boot.
pub fn init_bsp() {
    // SAFETY: called once on the boot CPU before any other code can observe BSP_TABLES;
    // afterwards the tables are only read by the CPU itself.
    let tables = unsafe { &mut *core::ptr::addr_of_mut!(BSP_TABLES) };
    tables.load();
}
