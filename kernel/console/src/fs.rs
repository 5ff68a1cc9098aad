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
}

impl File {
    /// Can `cat` read it? (Triggers are write-only, as in Linux.)
    pub fn readable(&self) -> bool {
        match self {
            File::View(_) => true,
            File::Tunable(t) => !matches!(t.kind, crate::tunable::Kind::Trigger),
            File::NodeCompact(_) => false,
            File::NodeView(..) => true,
            File::FaultAttr(_) => true,
        }
    }

    /// Can `echo` write it?
    pub fn writable(&self) -> bool {
        !matches!(self, File::View(_) | File::NodeView(..))
    }

    /// The file as it appears under node `nid`'s directory (node files in the tree carry
    /// a placeholder id).
    fn on_node(self, nid: Option<usize>) -> File {
        let n = nid.unwrap_or(0);
        match self {
            File::NodeCompact(_) => File::NodeCompact(n),
            File::NodeView(v, _) => File::NodeView(v, n),
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
}

const PLACEHOLDER_NODE: usize = usize::MAX;

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
    Ent::Dir(
        "sys",
        &[
            Ent::Dir(
                "devices",
                &[Ent::Dir(
                    "system",
                    &[Ent::Dir(
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
                            Ent::File("vmstat", File::NodeView(NodeView::Vmstat, PLACEHOLDER_NODE)),
                        ])],
                    )],
                )],
            ),
            Ent::Dir(
                "kernel",
                &[Ent::Dir(
                    "debug",
                    &[
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

fn node_id(name: &str, nodes: u64) -> Option<usize> {
    let digits = name.strip_prefix("node")?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    let nid: usize = digits.parse().ok()?;
    (nid < MAX_NODES && nodes & (1 << nid) != 0).then_some(nid)
}

enum Found {
    Dir(&'static [Ent], Option<usize>),
    File(File),
}

fn resolve<'a>(path: &Path<'a>, nodes: u64) -> Result<Found, FsError<'a>> {
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
                    if let Some(n) = node_id(c, nodes) {
                        nid = Some(n);
                        next = Some(Found::Dir(children, nid));
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

/// What `path` names, with `nodes` the mask of nodes that exist.
pub fn lookup(path: &str, nodes: u64) -> Result<Node, FsError<'_>> {
    let p = Path::parse(path)?;
    Ok(match resolve(&p, nodes)? {
        Found::Dir(..) => Node::Dir,
        Found::File(f) => Node::File(f),
    })
}

/// One name in a directory listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// A fixed name; `true` for a directory.
    Static(&'static str, bool),
    /// `nodeN` (a directory).
    Node(usize),
}

impl Name {
    /// Is it a directory?
    pub fn is_dir(&self) -> bool {
        matches!(self, Name::Static(_, true) | Name::Node(_))
    }
}

impl fmt::Display for Name {
    /// Directories end in `/`, as `ls -F` shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Name::Static(n, false) => f.write_str(n),
            Name::Static(n, true) => write!(f, "{n}/"),
            Name::Node(n) => write!(f, "node{n}/"),
        }
    }
}

/// Call `f` for every entry of directory `path` (a file lists itself, as `ls FILE` does).
pub fn list<'a>(path: &'a str, nodes: u64, f: &mut dyn FnMut(Name)) -> Result<(), FsError<'a>> {
    let p = Path::parse(path)?;
    match resolve(&p, nodes)? {
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
                        .filter(|n| nodes & (1 << n) != 0)
                        .for_each(|n| f(Name::Node(n))),
                }
            }
        }
    }
    Ok(())
}

fn static_file_name(dir: &'static [Ent], name: &str) -> Option<&'static str> {
    dir.iter().find_map(|e| match *e {
        Ent::File(n, _) if n == name => Some(n),
        Ent::Dir(_, children) | Ent::Nodes(children) => static_file_name(children, name),
        _ => None,
    })
}

/// Call `f` with the path of every file (for tests and for `ls -R`-like walks), given the
/// node mask. Paths are built in `buf`; `f` gets the path and what it names.
pub fn walk_files(nodes: u64, f: &mut dyn FnMut(&str, File)) {
    let mut buf = PathBuf::new();
    walk(ROOT, nodes, None, &mut buf, f);
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
    nodes: u64,
    nid: Option<usize>,
    buf: &mut PathBuf,
    f: &mut dyn FnMut(&str, File),
) {
    for e in dir {
        match *e {
            Ent::Dir(name, children) => {
                let saved = buf.push(format_args!("{name}"));
                walk(children, nodes, nid, buf, f);
                buf.len = saved;
            }
            Ent::File(name, file) => {
                let saved = buf.push(format_args!("{name}"));
                f(buf.as_str(), file.on_node(nid));
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
                for n in (0..MAX_NODES).filter(|n| nodes & (1 << n) != 0) {
                    let saved = buf.push(format_args!("node{n}"));
                    walk(children, nodes, Some(n), buf, f);
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
        assert_eq!(ls("/", 1).unwrap(), ["proc/", "sys/"]);
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
        // 6 in /proc, the tunables, 6 files in each of 2 node directories, 5 debugfs
        // files, the fault injection attributes.
        assert_eq!(n, 6 + TUNABLES.len() + 2 * 6 + 5 + FAIL_PAGE_ALLOC.len());
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
        let Node::File(f) = lookup("/proc/vmstat", 1).unwrap() else {
            panic!()
        };
        assert!(f.readable() && !f.writable());
    }
}
