//! The `/proc` and `/sys` files the console serves, as a static tree.
//!
//! There is no VFS in this kernel; `ls`, `cat` and `echo > PATH` only need to know which
//! paths exist, which are directories, and what each file is. Keeping that knowledge as
//! data here (rather than as `match` arms in the kernel) makes the path handling testable on
//! the host, lets `ls` list exactly what `cat` can open, and keeps one list to update when a
//! view is added. Paths are normalised first (`//`, `.`, `..`, trailing `/`), so
//! `cat /proc//sys/vm/../vm/min_free_kbytes` works as it would on Linux.

use core::fmt;

use crate::tunable::{FAIL_PAGE_ALLOC, TUNABLES, Tunable};

/// Deepest path accepted (the deepest real one has 5 components).
pub const MAX_DEPTH: usize = 16;

/// Nodes the tree can show (`nodeN` directories): bits of a `u64` mask.
pub const MAX_NODES: usize = 64;

/// Memory blocks the tree can show (`memoryN` directories, N below this): 128 MiB
/// blocks up to 128 GiB.
pub const MAX_MEMORY_BLOCKS: usize = 1024;

/// CMA areas the tree can show (`/sys/kernel/debug/cma/<name>/`), bits of a `u8` mask.
pub const MAX_CMA_AREAS: usize = 8;

/// What exists in the tree beyond its fixed entries: the nodes, the memory blocks and
/// the CMA areas of this machine.
#[derive(Clone, Copy)]
pub struct Present<'a> {
    /// Bit N set when node N exists.
    pub nodes: u64,
    /// Memory block N exists when bit N is set (`MAX_MEMORY_BLOCKS` bits).
    pub blocks: &'a [u64],
    /// The CMA areas' names, area `i` at index `i`.
    pub cma: &'a [&'a str],
    /// The ramdisk's file names, file `i` at index `i` (empty: no ramdisk).
    pub ramdisk: &'a [&'a str],
}

impl Present<'_> {
    /// Only nodes: no memory blocks, no CMA areas.
    pub const fn nodes(nodes: u64) -> Present<'static> {
        Present {
            nodes,
            blocks: &[],
            cma: &[],
            ramdisk: &[],
        }
    }

    fn block(&self, b: usize) -> bool {
        self.blocks
            .get(b / 64)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    fn each_block(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.blocks.len() * 64)
            .take(MAX_MEMORY_BLOCKS)
            .filter(|&b| self.block(b))
    }
}

/// A read-only view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `/proc/buddyinfo`
    Buddyinfo,
    /// `/proc/meminfo`
    Meminfo,
    /// `/proc/pagetypeinfo`
    Pagetypeinfo,
    /// `/proc/uptime`
    Uptime,
    /// `/proc/vmstat`
    Vmstat,
    /// `/proc/zoneinfo`
    Zoneinfo,
    /// `/sys/kernel/debug/compaction/zones`: per-zone deferral and scanner state.
    CompactionZones,
    /// `/sys/kernel/debug/extfrag/extfrag_index`
    ExtfragIndex,
    /// `/sys/kernel/debug/extfrag/unusable_index`
    UnusableIndex,
    /// `/sys/kernel/debug/mm/fragmentation_score`: each node's proactive-compaction score.
    FragmentationScore,
    /// `/sys/kernel/debug/mm/pageblock_map`: one character per pageblock.
    PageblockMap,
}

/// A per-node view (`/sys/devices/system/node/nodeN/<file>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeView {
    /// `cpulist`: the node's CPUs ("0-3,6").
    Cpulist,
    /// `distance`: the node's distances to every node, space-separated.
    Distance,
    /// `meminfo`: `Node N MemTotal:` and the other lines.
    Meminfo,
    /// `numastat`: the node's `numa_hit` ... `other_node` counters.
    Numastat,
    /// `vmstat`: the node's counters, one `name value` per line.
    Vmstat,
}

/// A file of a memory block (`/sys/devices/system/memory/memoryN/<file>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFile {
    /// `state`: `online` or `offline`; writing `offline`, `online`, `online_kernel` or
    /// `online_movable` does it.
    State,
    /// `phys_index`: the block number, 8 hex digits.
    PhysIndex,
    /// `valid_zones`: the zone an online block belongs to; the zones an offline block may
    /// be onlined into, the default first.
    ValidZones,
    /// `removable`: 1 (every block of this model may be tried).
    Removable,
}

/// A file of a CMA area (`/sys/kernel/debug/cma/<name>/<file>`, Linux's debugfs names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaFile {
    /// `base_pfn`
    BasePfn,
    /// `count`: pages in the area.
    Count,
    /// `used`: pages handed out by cma_alloc.
    Used,
    /// `maxchunk`: the largest run not handed out.
    Maxchunk,
    /// `order_per_bit`
    OrderPerBit,
    /// `bitmap`: the allocation bitmap as 32-bit decimal words.
    Bitmap,
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    /// A read-only view.
    View(View),
    /// A `/proc/sys/vm` tunable.
    Tunable(&'static Tunable),
    /// `/sys/devices/system/node/nodeN/compact` (write-only trigger) of node N.
    NodeCompact(usize),
    /// A read-only per-node view of node N (`/sys/devices/system/node/nodeN/...`).
    NodeView(NodeView, usize),
    /// A `/sys/kernel/debug/fail_page_alloc/` attribute (fault injection).
    FaultAttr(&'static Tunable),
    /// `/sys/devices/system/memory/block_size_bytes`
    BlockSizeBytes,
    /// A file of memory block N.
    Block(BlockFile, usize),
    /// A file of CMA area N.
    Cma(CmaFile, usize),
    /// File N of the ramdisk (`/ramdisk/NAME`), read through the page cache.
    Ramdisk(usize),
}

impl File {
    /// Can `cat` read it? (Triggers are write-only, as in Linux.)
    pub fn readable(&self) -> bool {
        match self {
            File::View(_) => true,
            File::Tunable(t) => t.readable(),
            File::NodeCompact(_) => false,
            File::NodeView(..) => true,
            File::FaultAttr(_) => true,
            File::BlockSizeBytes | File::Block(..) | File::Cma(..) => true,
            File::Ramdisk(_) => true,
        }
    }

    /// Can `echo` write it?
    pub fn writable(&self) -> bool {
        match self {
            File::View(_)
            | File::NodeView(..)
            | File::BlockSizeBytes
            | File::Cma(..)
            | File::Ramdisk(_) => false,
            File::Block(f, _) => *f == BlockFile::State,
            _ => true,
        }
    }

    /// The file as it appears under node, memory block or CMA area `id`'s directory
    /// (those files in the tree carry a placeholder id).
    fn on_node(self, id: Option<usize>) -> File {
        let n = id.unwrap_or(0);
        match self {
            File::NodeCompact(_) => File::NodeCompact(n),
            File::NodeView(v, _) => File::NodeView(v, n),
            File::Block(f, _) => File::Block(f, n),
            File::Cma(f, _) => File::Cma(f, n),
            f => f,
        }
    }
}

/// A tree entry.
enum Ent {
    Dir(&'static str, &'static [Ent]),
    File(&'static str, File),
    /// Every tunable of [`TUNABLES`], as files.
    Tunables,
    /// `nodeN` directories for the nodes present, each with these entries.
    Nodes(&'static [Ent]),
    /// `memoryN` directories for the memory blocks present, each with these entries.
    Blocks(&'static [Ent]),
    /// A directory per CMA area, named after it, each with these entries.
    CmaAreas(&'static [Ent]),
    /// A file per ramdisk file, named after it.
    RamdiskFiles,
}

const PLACEHOLDER_NODE: usize = usize::MAX;
const PLACEHOLDER: usize = usize::MAX;

const MEMORY_DIR: &[Ent] = &[
    Ent::File("block_size_bytes", File::BlockSizeBytes),
    Ent::Blocks(&[
        Ent::File("phys_index", File::Block(BlockFile::PhysIndex, PLACEHOLDER)),
        Ent::File("removable", File::Block(BlockFile::Removable, PLACEHOLDER)),
        Ent::File("state", File::Block(BlockFile::State, PLACEHOLDER)),
        Ent::File(
            "valid_zones",
            File::Block(BlockFile::ValidZones, PLACEHOLDER),
        ),
    ]),
];

const CMA_DIR: &[Ent] = &[Ent::CmaAreas(&[
    Ent::File("base_pfn", File::Cma(CmaFile::BasePfn, PLACEHOLDER)),
    Ent::File("bitmap", File::Cma(CmaFile::Bitmap, PLACEHOLDER)),
    Ent::File("count", File::Cma(CmaFile::Count, PLACEHOLDER)),
    Ent::File("maxchunk", File::Cma(CmaFile::Maxchunk, PLACEHOLDER)),
    Ent::File(
        "order_per_bit",
        File::Cma(CmaFile::OrderPerBit, PLACEHOLDER),
    ),
    Ent::File("used", File::Cma(CmaFile::Used, PLACEHOLDER)),
])];

const ROOT: &[Ent] = &[
    Ent::Dir(
        "proc",
        &[
            Ent::File("buddyinfo", File::View(View::Buddyinfo)),
            Ent::File("meminfo", File::View(View::Meminfo)),
            Ent::File("pagetypeinfo", File::View(View::Pagetypeinfo)),
            Ent::Dir("sys", &[Ent::Dir("vm", &[Ent::Tunables])]),
            Ent::File("uptime", File::View(View::Uptime)),
            Ent::File("vmstat", File::View(View::Vmstat)),
            Ent::File("zoneinfo", File::View(View::Zoneinfo)),
        ],
    ),
    Ent::Dir("ramdisk", &[Ent::RamdiskFiles]),
    Ent::Dir(
        "sys",
        &[
            Ent::Dir(
                "devices",
                &[Ent::Dir(
                    "system",
                    &[
                        Ent::Dir("memory", MEMORY_DIR),
                        Ent::Dir(
                            "node",
                            &[Ent::Nodes(&[
                                Ent::File("compact", File::NodeCompact(PLACEHOLDER_NODE)),
                                Ent::File(
                                    "cpulist",
                                    File::NodeView(NodeView::Cpulist, PLACEHOLDER_NODE),
                                ),
                                Ent::File(
                                    "distance",
                                    File::NodeView(NodeView::Distance, PLACEHOLDER_NODE),
                                ),
                                Ent::File(
                                    "meminfo",
                                    File::NodeView(NodeView::Meminfo, PLACEHOLDER_NODE),
                                ),
                                Ent::File(
                                    "numastat",
                                    File::NodeView(NodeView::Numastat, PLACEHOLDER_NODE),
                                ),
                                Ent::File(
                                    "vmstat",
                                    File::NodeView(NodeView::Vmstat, PLACEHOLDER_NODE),
                                ),
                            ])],
                        ),
                    ],
                )],
            ),
            Ent::Dir(
                "kernel",
                &[Ent::Dir(
                    "debug",
                    &[
                        Ent::Dir("cma", CMA_DIR),
                        Ent::Dir(
                            "compaction",
                            &[Ent::File("zones", File::View(View::CompactionZones))],
                        ),
                        Ent::Dir(
                            "fail_page_alloc",
                            &[
                                Ent::File(
                                    "ignore-gfp-highmem",
                                    File::FaultAttr(&FAIL_PAGE_ALLOC[0]),
                                ),
                                Ent::File("ignore-gfp-wait", File::FaultAttr(&FAIL_PAGE_ALLOC[1])),
                                Ent::File("interval", File::FaultAttr(&FAIL_PAGE_ALLOC[2])),
                                Ent::File("migratetype-mask", File::FaultAttr(&FAIL_PAGE_ALLOC[3])),
                                Ent::File("min-order", File::FaultAttr(&FAIL_PAGE_ALLOC[4])),
                                Ent::File("probability", File::FaultAttr(&FAIL_PAGE_ALLOC[5])),
                                Ent::File("space", File::FaultAttr(&FAIL_PAGE_ALLOC[6])),
                                Ent::File("times", File::FaultAttr(&FAIL_PAGE_ALLOC[7])),
                            ],
                        ),
                        Ent::Dir(
                            "extfrag",
                            &[
                                Ent::File("extfrag_index", File::View(View::ExtfragIndex)),
                                Ent::File("unusable_index", File::View(View::UnusableIndex)),
                            ],
                        ),
                        Ent::Dir(
                            "mm",
                            &[
                                Ent::File(
                                    "fragmentation_score",
                                    File::View(View::FragmentationScore),
                                ),
                                Ent::File("pageblock_map", File::View(View::PageblockMap)),
                            ],
                        ),
                    ],
                )],
            ),
        ],
    ),
];

/// Why a path could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError<'a> {
    /// Paths start with `/`.
    NotAbsolute(&'a str),
    /// More than [`MAX_DEPTH`] components.
    TooDeep,
    /// Nothing by that name (the component that was not found).
    NotFound(&'a str),
    /// A file was used as a directory.
    NotADirectory(&'a str),
}

impl fmt::Display for FsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FsError::NotAbsolute(p) => write!(f, "{p}: paths start with / (try ls /)"),
            FsError::TooDeep => f.write_str("path too deep"),
            FsError::NotFound(c) => write!(f, "{c}: no such file or directory"),
            FsError::NotADirectory(c) => write!(f, "{c}: not a directory"),
        }
    }
}

/// A path split into normalised components.
#[derive(Clone, Copy, Debug)]
pub struct Path<'a> {
    parts: [&'a str; MAX_DEPTH],
    len: usize,
}

impl<'a> Path<'a> {
    /// Split and normalise an absolute path.
    pub fn parse(path: &'a str) -> Result<Path<'a>, FsError<'a>> {
        if !path.starts_with('/') {
            return Err(FsError::NotAbsolute(path));
        }
        let mut p = Path {
            parts: [""; MAX_DEPTH],
            len: 0,
        };
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => p.len = p.len.saturating_sub(1),
                c => {
                    if p.len == MAX_DEPTH {
                        return Err(FsError::TooDeep);
                    }
                    p.parts[p.len] = c;
                    p.len += 1;
                }
            }
        }
        Ok(p)
    }

    /// The components.
    pub fn components(&self) -> &[&'a str] {
        &self.parts[..self.len]
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("/");
        }
        for c in self.components() {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A file.
    File(File),
}

/// The number after `prefix` in `name` (`node2` -> 2), without leading zeros.
fn numbered(name: &str, prefix: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

fn node_id(name: &str, nodes: u64) -> Option<usize> {
    let nid = numbered(name, "node")?;
    (nid < MAX_NODES && nodes & (1 << nid) != 0).then_some(nid)
}

fn block_id(name: &str, present: &Present<'_>) -> Option<usize> {
    let b = numbered(name, "memory")?;
    (b < MAX_MEMORY_BLOCKS && present.block(b)).then_some(b)
}

enum Found {
    Dir(&'static [Ent], Option<usize>),
    File(File),
}

fn resolve<'a>(path: &Path<'a>, present: &Present<'_>) -> Result<Found, FsError<'a>> {
    let mut dir: &'static [Ent] = ROOT;
    let mut nid = None;
    let comps = path.components();
    for (i, &c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = None;
        for e in dir {
            match *e {
                Ent::Dir(name, children) if name == c => next = Some(Found::Dir(children, nid)),
                Ent::File(name, file) if name == c => {
                    next = Some(Found::File(file.on_node(nid)));
                }
                Ent::Tunables => {
                    if let Some(t) = TUNABLES.iter().find(|t| t.name == c) {
                        next = Some(Found::File(File::Tunable(t)));
                    }
                }
                Ent::Nodes(children) => {
                    if let Some(n) = node_id(c, present.nodes) {
                        next = Some(Found::Dir(children, Some(n)));
                    }
                }
                Ent::Blocks(children) => {
                    if let Some(b) = block_id(c, present) {
                        next = Some(Found::Dir(children, Some(b)));
                    }
                }
                Ent::CmaAreas(children) => {
                    if let Some(i) = present.cma.iter().take(MAX_CMA_AREAS).position(|n| *n == c) {
                        next = Some(Found::Dir(children, Some(i)));
                    }
                }
                Ent::RamdiskFiles => {
                    if let Some(i) = present.ramdisk.iter().position(|n| *n == c) {
                        next = Some(Found::File(File::Ramdisk(i)));
                    }
                }
                _ => {}
            }
            if next.is_some() {
                break;
            }
        }
        match next {
            None => return Err(FsError::NotFound(c)),
            Some(Found::File(f)) if last => return Ok(Found::File(f)),
            Some(Found::File(_)) => return Err(FsError::NotADirectory(c)),
            Some(Found::Dir(children, n)) => {
                dir = children;
                nid = n;
            }
        }
    }
    Ok(Found::Dir(dir, nid))
}

/// What `path` names, with `nodes` the mask of nodes that exist (no memory blocks or CMA
/// areas: see [`lookup_in`]).
pub fn lookup(path: &str, nodes: u64) -> Result<Node, FsError<'_>> {
    lookup_in(path, &Present::nodes(nodes))
}

/// What `path` names, given what exists.
pub fn lookup_in<'a>(path: &'a str, present: &Present<'_>) -> Result<Node, FsError<'a>> {
    let p = Path::parse(path)?;
    Ok(match resolve(&p, present)? {
        Found::Dir(..) => Node::Dir,
        Found::File(f) => Node::File(f),
    })
}

/// One name in a directory listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name<'a> {
    /// A fixed name; `true` for a directory.
    Static(&'static str, bool),
    /// `nodeN` (a directory).
    Node(usize),
    /// `memoryN` (a directory).
    Block(usize),
    /// A CMA area's directory.
    Cma(&'a str),
    /// A ramdisk file.
    File(&'a str),
}

impl Name<'_> {
    /// Is it a directory?
    pub fn is_dir(&self) -> bool {
        matches!(
            self,
            Name::Static(_, true) | Name::Node(_) | Name::Block(_) | Name::Cma(_)
        )
    }
}

impl fmt::Display for Name<'_> {
    /// Directories end in `/`, as `ls -F` shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Name::Static(n, false) => f.write_str(n),
            Name::Static(n, true) => write!(f, "{n}/"),
            Name::Node(n) => write!(f, "node{n}/"),
            Name::Block(n) => write!(f, "memory{n}/"),
            Name::Cma(n) => write!(f, "{n}/"),
            Name::File(n) => f.write_str(n),
        }
    }
}

/// Call `f` for every entry of directory `path` (a file lists itself, as `ls FILE` does),
/// with `nodes` the mask of nodes (no memory blocks or CMA areas: see [`list_in`]).
pub fn list<'a>(path: &'a str, nodes: u64, f: &mut dyn FnMut(Name)) -> Result<(), FsError<'a>> {
    list_in(path, &Present::nodes(nodes), f)
}

/// [`list`], given what exists.
pub fn list_in<'a, 'p>(
    path: &'a str,
    present: &Present<'p>,
    f: &mut dyn FnMut(Name<'p>),
) -> Result<(), FsError<'a>> {
    let p = Path::parse(path)?;
    match resolve(&p, present)? {
        Found::File(File::Ramdisk(i)) => {
            if let Some(n) = present.ramdisk.get(i) {
                f(Name::File(n));
            }
        }
        Found::File(_) => {
            let last = p.components().last().copied().unwrap_or("/");
            // The name must be 'static: find it again in the tree or the tunable table.
            let name = TUNABLES
                .iter()
                .map(|t| t.name)
                .find(|n| *n == last)
                .or_else(|| static_file_name(ROOT, last));
            if let Some(n) = name {
                f(Name::Static(n, false));
            }
        }
        Found::Dir(dir, _) => {
            for e in dir {
                match *e {
                    Ent::Dir(name, _) => f(Name::Static(name, true)),
                    Ent::File(name, _) => f(Name::Static(name, false)),
                    Ent::Tunables => TUNABLES.iter().for_each(|t| f(Name::Static(t.name, false))),
                    Ent::Nodes(_) => (0..MAX_NODES)
                        .filter(|n| present.nodes & (1 << n) != 0)
                        .for_each(|n| f(Name::Node(n))),
                    Ent::Blocks(_) => present.each_block().for_each(|b| f(Name::Block(b))),
                    Ent::CmaAreas(_) => present
                        .cma
                        .iter()
                        .take(MAX_CMA_AREAS)
                        .for_each(|n| f(Name::Cma(n))),
                    Ent::RamdiskFiles => present.ramdisk.iter().for_each(|n| f(Name::File(n))),
                }
            }
        }
    }
    Ok(())
}

fn static_file_name(dir: &'static [Ent], name: &str) -> Option<&'static str> {
    dir.iter().find_map(|e| match *e {
        Ent::File(n, _) if n == name => Some(n),
        Ent::Dir(_, children)
        | Ent::Nodes(children)
        | Ent::Blocks(children)
        | Ent::CmaAreas(children) => static_file_name(children, name),
        _ => None,
    })
}

/// Call `f` with the path of every file (for tests and for `ls -R`-like walks), given the
/// node mask. Paths are built in `buf`; `f` gets the path and what it names.
pub fn walk_files(nodes: u64, f: &mut dyn FnMut(&str, File)) {
    walk_files_in(&Present::nodes(nodes), f);
}

/// [`walk_files`], given what exists.
pub fn walk_files_in(present: &Present<'_>, f: &mut dyn FnMut(&str, File)) {
    let mut buf = PathBuf::new();
    walk(ROOT, present, None, &mut buf, f);
}

/// A small fixed-capacity path buffer (no allocation in this crate).
struct PathBuf {
    bytes: [u8; 128],
    len: usize,
}

impl PathBuf {
    fn new() -> PathBuf {
        PathBuf {
            bytes: [0; 128],
            len: 0,
        }
    }

    fn push(&mut self, comp: fmt::Arguments<'_>) -> usize {
        let saved = self.len;
        let _ = fmt::Write::write_fmt(self, format_args!("/{comp}"));
        saved
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for PathBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn walk(
    dir: &'static [Ent],
    present: &Present<'_>,
    id: Option<usize>,
    buf: &mut PathBuf,
    f: &mut dyn FnMut(&str, File),
) {
    for e in dir {
        match *e {
            Ent::Dir(name, children) => {
                let saved = buf.push(format_args!("{name}"));
                walk(children, present, id, buf, f);
                buf.len = saved;
            }
            Ent::File(name, file) => {
                let saved = buf.push(format_args!("{name}"));
                f(buf.as_str(), file.on_node(id));
                buf.len = saved;
            }
            Ent::Tunables => {
                for t in TUNABLES {
                    let saved = buf.push(format_args!("{}", t.name));
                    f(buf.as_str(), File::Tunable(t));
                    buf.len = saved;
                }
            }
            Ent::Nodes(children) => {
                for n in (0..MAX_NODES).filter(|n| present.nodes & (1 << n) != 0) {
                    let saved = buf.push(format_args!("node{n}"));
                    walk(children, present, Some(n), buf, f);
                    buf.len = saved;
                }
            }
            Ent::Blocks(children) => {
                for b in present.each_block() {
                    let saved = buf.push(format_args!("memory{b}"));
                    walk(children, present, Some(b), buf, f);
                    buf.len = saved;
                }
            }
            Ent::CmaAreas(children) => {
                for (i, name) in present.cma.iter().take(MAX_CMA_AREAS).enumerate() {
                    let saved = buf.push(format_args!("{name}"));
                    walk(children, present, Some(i), buf, f);
                    buf.len = saved;
                }
            }
            Ent::RamdiskFiles => {
                for (i, name) in present.ramdisk.iter().enumerate() {
                    let saved = buf.push(format_args!("{name}"));
                    f(buf.as_str(), File::Ramdisk(i));
                    buf.len = saved;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(path: &str, nodes: u64) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        list(path, nodes, &mut |n| out.push(n.to_string())).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn directories_list_their_entries() {
        assert_eq!(ls("/", 1).unwrap(), ["proc/", "ramdisk/", "sys/"]);
        // Without a ramdisk its directory is empty.
        assert_eq!(ls("/ramdisk", 1).unwrap(), Vec::<String>::new());
        assert_eq!(
            ls("/proc", 1).unwrap(),
            [
                "buddyinfo",
                "meminfo",
                "pagetypeinfo",
                "sys/",
                "uptime",
                "vmstat",
                "zoneinfo"
            ]
        );
        let vm = ls("/proc/sys/vm/", 1).unwrap();
        assert_eq!(vm.len(), TUNABLES.len());
        assert!(vm.contains(&"watermark_scale_factor".to_string()));
        assert_eq!(
            ls("/sys/devices/system/node", 0b101).unwrap(),
            ["node0/", "node2/"]
        );
        assert_eq!(
            ls("/sys/devices/system/node/node2", 0b101).unwrap(),
            [
                "compact", "cpulist", "distance", "meminfo", "numastat", "vmstat"
            ]
        );
        assert_eq!(
            lookup("/sys/devices/system/node/node2/distance", 0b101),
            Ok(Node::File(File::NodeView(NodeView::Distance, 2)))
        );
        assert_eq!(
            ls("/sys/kernel/debug/extfrag", 1).unwrap(),
            ["extfrag_index", "unusable_index"]
        );
        assert_eq!(ls("/proc/buddyinfo", 1).unwrap(), ["buddyinfo"]);
        assert_eq!(
            ls("/proc/sys/vm/min_free_kbytes", 1).unwrap(),
            ["min_free_kbytes"]
        );
    }

    #[test]
    fn lookups_resolve_and_normalise() {
        assert_eq!(
            lookup("/proc/buddyinfo", 1),
            Ok(Node::File(File::View(View::Buddyinfo)))
        );
        assert_eq!(
            lookup("//proc/./sys/vm/../vm/min_free_kbytes", 1),
            Ok(Node::File(File::Tunable(
                crate::tunable::find("min_free_kbytes").unwrap()
            )))
        );
        assert_eq!(lookup("/proc/sys/", 1), Ok(Node::Dir));
        assert_eq!(lookup("/../..", 1), Ok(Node::Dir));
        assert_eq!(
            lookup("/sys/devices/system/node/node3/compact", 0b1000),
            Ok(Node::File(File::NodeCompact(3)))
        );
        assert_eq!(
            lookup("/sys/devices/system/node/node1/compact", 0b1),
            Err(FsError::NotFound("node1"))
        );
        assert_eq!(
            lookup("/sys/devices/system/node/node01/compact", 0b10),
            Err(FsError::NotFound("node01"))
        );
        assert_eq!(
            lookup("/proc/buddyinfo/x", 1),
            Err(FsError::NotADirectory("buddyinfo"))
        );
        assert_eq!(lookup("proc", 1), Err(FsError::NotAbsolute("proc")));
        assert_eq!(lookup("/proc/nope", 1), Err(FsError::NotFound("nope")));
        assert_eq!(
            lookup(&"/a".repeat(MAX_DEPTH + 1), 1),
            Err(FsError::TooDeep)
        );
    }

    #[test]
    fn every_walked_file_looks_up_to_itself() {
        let mut n = 0;
        walk_files(0b11, &mut |path, file| {
            assert_eq!(lookup(path, 0b11), Ok(Node::File(file)), "{path}");
            n += 1;
        });
        // 6 in /proc, the tunables, block_size_bytes, 6 files in each of 2 node
        // directories, 5 debugfs files, the fault injection attributes.
        assert_eq!(
            n,
            6 + TUNABLES.len() + 1 + 2 * 6 + 5 + FAIL_PAGE_ALLOC.len()
        );
    }

    /// Memory blocks 0, 1, 3 and 65 (two mask words), one CMA area.
    const BLOCKS: [u64; 2] = [0b1011, 0b10];
    const PRESENT: Present<'static> = Present {
        nodes: 0b11,
        blocks: &BLOCKS,
        cma: &["reserved"],
        ramdisk: &["README", "data00.bin"],
    };

    fn ls_in(path: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        list_in(path, &PRESENT, &mut |n| out.push(n.to_string())).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn memory_blocks_expand_per_block() {
        assert_eq!(
            ls_in("/sys/devices/system/memory").unwrap(),
            [
                "block_size_bytes",
                "memory0/",
                "memory1/",
                "memory3/",
                "memory65/"
            ]
        );
        assert_eq!(
            ls_in("/sys/devices/system/memory/memory65").unwrap(),
            ["phys_index", "removable", "state", "valid_zones"]
        );
        assert_eq!(
            lookup_in("/sys/devices/system/memory/memory3/state", &PRESENT),
            Ok(Node::File(File::Block(BlockFile::State, 3)))
        );
        assert_eq!(
            lookup_in("/sys/devices/system/memory/memory65/phys_index", &PRESENT),
            Ok(Node::File(File::Block(BlockFile::PhysIndex, 65)))
        );
        for missing in [
            "memory2",
            "memory64",
            "memory03",
            "memory",
            "memoryx",
            "memory99999",
        ] {
            assert_eq!(
                lookup_in(
                    &format!("/sys/devices/system/memory/{missing}/state"),
                    &PRESENT
                ),
                Err(FsError::NotFound(missing)),
                "{missing}"
            );
        }
        // Only `state` is writable.
        for (name, writable) in [
            ("state", true),
            ("phys_index", false),
            ("valid_zones", false),
            ("removable", false),
        ] {
            let Node::File(f) = lookup_in(
                &format!("/sys/devices/system/memory/memory0/{name}"),
                &PRESENT,
            )
            .unwrap() else {
                panic!("{name}")
            };
            assert!(f.readable(), "{name}");
            assert_eq!(f.writable(), writable, "{name}");
        }
        // Without blocks (the node-only lookups), the directory is empty but exists.
        assert_eq!(
            ls("/sys/devices/system/memory", 1).unwrap(),
            ["block_size_bytes"]
        );
    }

    #[test]
    fn cma_areas_expand_by_name() {
        assert_eq!(ls_in("/sys/kernel/debug/cma").unwrap(), ["reserved/"]);
        assert_eq!(
            ls_in("/sys/kernel/debug/cma/reserved").unwrap(),
            [
                "base_pfn",
                "bitmap",
                "count",
                "maxchunk",
                "order_per_bit",
                "used"
            ]
        );
        assert_eq!(
            lookup_in("/sys/kernel/debug/cma/reserved/used", &PRESENT),
            Ok(Node::File(File::Cma(CmaFile::Used, 0)))
        );
        assert_eq!(
            lookup_in("/sys/kernel/debug/cma/other/used", &PRESENT),
            Err(FsError::NotFound("other"))
        );
        let Node::File(f) = lookup_in("/sys/kernel/debug/cma/reserved/bitmap", &PRESENT).unwrap()
        else {
            panic!()
        };
        assert!(f.readable() && !f.writable());
        assert_eq!(
            ls("/sys/kernel/debug/cma", 1).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn walk_counts_blocks_and_cma_files() {
        let mut n = 0;
        walk_files_in(&PRESENT, &mut |path, file| {
            assert_eq!(lookup_in(path, &PRESENT), Ok(Node::File(file)), "{path}");
            n += 1;
        });
        // As above, plus 4 files in each of 4 memory blocks, 6 in one CMA area and the
        // 2 ramdisk files.
        assert_eq!(
            n,
            6 + TUNABLES.len() + 1 + 4 * 4 + 2 * 6 + 6 + 5 + FAIL_PAGE_ALLOC.len() + 2
        );
    }

    #[test]
    fn ramdisk_files_are_read_only_files_by_index() {
        assert_eq!(ls_in("/ramdisk").unwrap(), ["README", "data00.bin"]);
        assert_eq!(ls_in("/ramdisk/data00.bin").unwrap(), ["data00.bin"]);
        assert_eq!(
            lookup_in("/ramdisk/data00.bin", &PRESENT),
            Ok(Node::File(File::Ramdisk(1)))
        );
        assert_eq!(
            lookup_in("/ramdisk/nope", &PRESENT),
            Err(FsError::NotFound("nope"))
        );
        let Node::File(f) = lookup_in("/ramdisk/README", &PRESENT).unwrap() else {
            panic!()
        };
        assert!(f.readable() && !f.writable());
    }

    #[test]
    fn fault_attributes_are_files_named_after_their_entries() {
        for t in FAIL_PAGE_ALLOC {
            let path = format!("/sys/kernel/debug/fail_page_alloc/{}", t.name);
            assert_eq!(
                lookup(&path, 1),
                Ok(Node::File(File::FaultAttr(t))),
                "{path}"
            );
        }
        assert_eq!(ls("/sys/kernel/debug/fail_page_alloc", 1).unwrap().len(), 8);
    }

    #[test]
    fn triggers_are_write_only_and_views_read_only() {
        let Node::File(f) = lookup("/proc/sys/vm/compact_memory", 1).unwrap() else {
            panic!()
        };
        assert!(!f.readable() && f.writable());
        let Node::File(f) = lookup("/proc/sys/vm/drop_caches", 1).unwrap() else {
            panic!()
        };
        assert!(!f.readable() && f.writable());
        let Node::File(f) = lookup("/proc/vmstat", 1).unwrap() else {
            panic!()
        };
        assert!(f.readable() && !f.writable());
    }
}
