//! Intrusive doubly-linked lists of pages through `page.lru` (Linux: `list_head` used as
//! `free_area[order].free_list[migratetype]`, the pcp lists, the LRU).
//!
//! The buddy allocator must put a page on a list, take one off, and unlink an arbitrary
//! page (a buddy being merged) in O(1) without allocating: the links therefore live inside
//! the `struct Page` itself. Unlike Linux's circular `list_head`, the list here is
//! null-terminated and its head holds only `first`/`last`: a head never points to itself, so
//! a `Zone` holding heads can be built on the stack and moved into place before any page is
//! linked, which Rust's move semantics require.
//!
//! The operations are `unsafe`: the list cannot know that the page it is given lives in a
//! memmap that outlives it, that the page is on no other list (push) or on this one
//! (remove), or that the caller holds the lock protecting the list. The buddy code upholds
//! those with the zone lock and `PG_buddy`.

use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::Relaxed;

use crate::model::page::Page;

/// The head of an intrusive page list. Holds only pointers; does not own the pages.
#[derive(Debug)]
pub struct PageList {
    first: *mut Page,
    last: *mut Page,
    len: usize,
}

// SAFETY: the list only stores addresses of `Page`s, which are themselves `Sync` (all
// atomics); moving the head to another thread moves no page. Mutation needs `&mut`, which
// the owner's lock provides.
unsafe impl Send for PageList {}
// SAFETY: `&PageList` only reads the head pointers and the length.
unsafe impl Sync for PageList {}

impl Default for PageList {
    fn default() -> Self {
        PageList::new()
    }
}

impl PageList {
    /// An empty list.
    pub const fn new() -> PageList {
        PageList {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
            len: 0,
        }
    }

    /// True if no page is linked.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.first.is_null()
    }

    /// Number of pages linked.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first page.
    #[inline]
    pub fn first(&self) -> Option<NonNull<Page>> {
        NonNull::new(self.first)
    }

    /// The last page.
    #[inline]
    pub fn last(&self) -> Option<NonNull<Page>> {
        NonNull::new(self.last)
    }

    /// Link `page` at the front (`list_add`).
    ///
    /// # Safety
    ///
    /// `page` is on no list, lives in a memmap that outlives its membership of this list,
    /// and the caller holds the lock that protects this list.
    #[inline]
    pub unsafe fn push_front(&mut self, page: &Page) {
        let p = page as *const Page as *mut Page;
        page.lru.prev.store(ptr::null_mut(), Relaxed);
        page.lru.next.store(self.first, Relaxed);
        if self.first.is_null() {
            self.last = p;
        } else {
            // SAFETY: `first` is a linked page, alive by the contract of whoever linked it.
            unsafe { (*self.first).lru.prev.store(p, Relaxed) };
        }
        self.first = p;
        self.len += 1;
    }

    /// Link `page` at the back (`list_add_tail`).
    ///
    /// # Safety
    ///
    /// As for [`PageList::push_front`].
    #[inline]
    pub unsafe fn push_back(&mut self, page: &Page) {
        let p = page as *const Page as *mut Page;
        page.lru.next.store(ptr::null_mut(), Relaxed);
        page.lru.prev.store(self.last, Relaxed);
        if self.last.is_null() {
            self.first = p;
        } else {
            // SAFETY: `last` is a linked page, alive by the contract of whoever linked it.
            unsafe { (*self.last).lru.next.store(p, Relaxed) };
        }
        self.last = p;
        self.len += 1;
    }

    /// Unlink `page` (`list_del`), leaving its links null.
    ///
    /// # Safety
    ///
    /// `page` is on this list, and the caller holds the lock that protects it.
    #[inline]
    pub unsafe fn remove(&mut self, page: &Page) {
        let next = page.lru.next.load(Relaxed);
        let prev = page.lru.prev.load(Relaxed);
        if prev.is_null() {
            self.first = next;
        } else {
            // SAFETY: `prev` is this page's neighbour on this list, hence a linked page.
            unsafe { (*prev).lru.next.store(next, Relaxed) };
        }
        if next.is_null() {
            self.last = prev;
        } else {
            // SAFETY: `next` is this page's neighbour on this list, hence a linked page.
            unsafe { (*next).lru.prev.store(prev, Relaxed) };
        }
        page.lru.next.store(ptr::null_mut(), Relaxed);
        page.lru.prev.store(ptr::null_mut(), Relaxed);
        self.len -= 1;
    }

    /// Unlink and return the first page.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that protects this list.
    #[inline]
    pub unsafe fn pop_front(&mut self) -> Option<NonNull<Page>> {
        let first = NonNull::new(self.first)?;
        // SAFETY: `first` is linked on this list; the caller holds its lock.
        unsafe { self.remove(first.as_ref()) };
        Some(first)
    }

    /// Unlink and return the last page.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that protects this list.
    #[inline]
    pub unsafe fn pop_back(&mut self) -> Option<NonNull<Page>> {
        let last = NonNull::new(self.last)?;
        // SAFETY: `last` is linked on this list; the caller holds its lock.
        unsafe { self.remove(last.as_ref()) };
        Some(last)
    }

    /// Unlink up to `max` pages from the back, last first, and hand them to `run` as runs:
    /// each maximal group of pages that came off one after the other with descriptors
    /// adjacent in memory, every one right below (or every one right above) the one
    /// before, and `joins(lower, upper)` true for each adjacent pair. `run(lo, hi)` gets
    /// the lowest and highest descriptor of the group, links already null. Returns how
    /// many pages were taken. The same pages as `max` calls of [`PageList::pop_back`],
    /// but the list's ends are fixed once, and a run costs a pointer comparison per page
    /// where per-page handling would cost a call: a pcp drain's walk, where the pages
    /// taken are many and mostly freed together as blocks.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that protects this list, and `run` does not touch this
    /// list (it may link the pages it is given on other lists: their links are theirs by
    /// then).
    #[inline]
    pub unsafe fn drain_back_runs(
        &mut self,
        max: usize,
        joins: impl Fn(&Page, &Page) -> bool,
        mut run: impl FnMut(NonNull<Page>, NonNull<Page>),
    ) -> usize {
        let mut cur = self.last;
        let mut n = 0;
        // Unlink `p` (the page at `cur`): read its predecessor first.
        let take = |p: &Page, cur: &mut *mut Page, n: &mut usize| {
            *cur = p.lru.prev.load(Relaxed);
            p.lru.next.store(ptr::null_mut(), Relaxed);
            p.lru.prev.store(ptr::null_mut(), Relaxed);
            *n += 1;
        };
        while n < max
            && let Some(first) = NonNull::new(cur)
        {
            // SAFETY: `first` is linked on this list (its last page, or the predecessor of
            // a page just taken, read before that page was handed on); the caller holds
            // the lock.
            take(unsafe { first.as_ref() }, &mut cur, &mut n);
            let (mut lo, mut hi) = (first, first);
            // Falling: each next page right below the lowest so far.
            while n < max
                && let Some(next) = NonNull::new(cur)
                && next.as_ptr() == lo.as_ptr().wrapping_sub(1)
                // SAFETY: `next` is linked on this list, as `first` above.
                && joins(unsafe { next.as_ref() }, unsafe { lo.as_ref() })
            {
                // SAFETY: as above.
                take(unsafe { next.as_ref() }, &mut cur, &mut n);
                lo = next;
            }
            // Rising, if it did not fall: each next page right above the highest.
            let fell = lo != hi;
            while !fell
                && n < max
                && let Some(next) = NonNull::new(cur)
                && next.as_ptr() == hi.as_ptr().wrapping_add(1)
                // SAFETY: `next` is linked on this list, as `first` above.
                && joins(unsafe { hi.as_ref() }, unsafe { next.as_ref() })
            {
                // SAFETY: as above.
                take(unsafe { next.as_ref() }, &mut cur, &mut n);
                hi = next;
            }
            run(lo, hi);
        }
        self.last = cur;
        if cur.is_null() {
            self.first = ptr::null_mut();
        } else {
            // SAFETY: `cur` is still linked on this list (its new last page).
            unsafe { (*cur).lru.next.store(ptr::null_mut(), Relaxed) };
        }
        self.len -= n;
        n
    }

    /// Iterate from first to last.
    ///
    /// # Safety
    ///
    /// The list is not modified while the iterator is alive (the caller holds its lock).
    pub unsafe fn iter(&self) -> impl Iterator<Item = NonNull<Page>> + '_ {
        let mut cur = self.first;
        core::iter::from_fn(move || {
            let p = NonNull::new(cur)?;
            // SAFETY: `p` is linked on this list, which the caller keeps unchanged.
            cur = unsafe { p.as_ref().lru.next.load(Relaxed) };
            Some(p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn push_remove_pop() {
        let pages: Vec<Page> = (0..5).map(|_| Page::new(0)).collect();
        let mut l = PageList::new();
        // SAFETY: the pages outlive the list, each is linked once, single thread.
        unsafe {
            l.push_back(&pages[1]);
            l.push_back(&pages[2]);
            l.push_front(&pages[0]);
            l.push_back(&pages[3]);
            assert_eq!(l.len(), 4);
            l.remove(&pages[2]);
            let order: Vec<*const Page> = l.iter().map(|p| p.as_ptr() as *const Page).collect();
            assert_eq!(
                order,
                [&pages[0], &pages[1], &pages[3]].map(|p| p as *const Page)
            );
            l.remove(&pages[0]);
            l.remove(&pages[3]);
            assert_eq!(
                l.pop_front().map(|p| p.as_ptr() as *const Page),
                Some(&pages[1] as *const Page)
            );
            assert!(l.is_empty());
            assert_eq!(l.pop_back(), None);
        }
    }

    #[test]
    fn drain_back_runs_takes_the_tail_and_leaves_a_sound_list() {
        let pages: Vec<Page> = (0..5).map(|_| Page::new(0)).collect();
        let addr = |p: &Page| p as *const Page;
        let mut l = PageList::new();
        // SAFETY: the pages outlive the list, each is linked once, single thread.
        unsafe {
            for p in &pages {
                l.push_back(p);
            }
            let mut runs = Vec::new();
            let n = l.drain_back_runs(
                3,
                |_, _| true,
                |lo, hi| {
                    for p in [lo, hi] {
                        assert!(p.as_ref().lru.next.load(Relaxed).is_null());
                        assert!(p.as_ref().lru.prev.load(Relaxed).is_null());
                    }
                    runs.push((lo.as_ptr() as *const Page, hi.as_ptr() as *const Page));
                },
            );
            assert_eq!(n, 3);
            // 4, 3, 2 came off falling: one run, lowest first.
            assert_eq!(runs, [(addr(&pages[2]), addr(&pages[4]))]);
            assert!(pages[3].lru.next.load(Relaxed).is_null());
            // What is left is a sound two-page list: both ends, the length, the links.
            assert_eq!(l.len(), 2);
            assert_eq!(
                l.last().map(|p| p.as_ptr() as *const Page),
                Some(addr(&pages[1]))
            );
            assert!(pages[1].lru.next.load(Relaxed).is_null());
            let order: Vec<*const Page> = l.iter().map(|p| p.as_ptr() as *const Page).collect();
            assert_eq!(order, [addr(&pages[0]), addr(&pages[1])]);
            l.push_back(&pages[2]);
            assert_eq!(l.len(), 3);
            // Asking for more than the list holds takes it all and empties it.
            assert_eq!(l.drain_back_runs(10, |_, _| true, |_, _| {}), 3);
            assert!(l.is_empty());
            assert_eq!(l.len(), 0);
            assert_eq!(l.last(), None);
            assert_eq!(l.drain_back_runs(1, |_, _| true, |_, _| {}), 0);
            l.push_front(&pages[0]);
            assert_eq!(
                l.pop_back().map(|p| p.as_ptr() as *const Page),
                Some(addr(&pages[0]))
            );
        }
    }

    /// Runs end where the next page is not adjacent, goes the other way, is refused by
    /// `joins`, or `max` is reached; single pages are runs of one.
    #[test]
    fn drain_back_runs_splits_where_adjacency_or_joins_ends() {
        let pages: Vec<Page> = (0..16).map(|_| Page::new(0)).collect();
        let mut l = PageList::new();
        // Taken from the back: 9 10 11 12 (rising) | 5 4 3 (falling) | 7 | 2 1 (falling,
        // then `joins` refuses the pair (0, 1)) | 0 | 14 (then `max`) and 13 15 stay.
        let back_first = [9, 10, 11, 12, 5, 4, 3, 7, 2, 1, 0, 14, 13, 15];
        // SAFETY: as above.
        unsafe {
            for &i in &back_first {
                l.push_front(&pages[i]);
            }
            let idx = |p: NonNull<Page>| {
                (p.as_ptr() as usize - pages.as_ptr() as usize) / size_of::<Page>()
            };
            let mut runs = Vec::new();
            let refused: *const Page = &pages[0];
            let n = l.drain_back_runs(
                12,
                |a, _| !ptr::eq(a, refused),
                |lo, hi| runs.push((idx(lo), idx(hi))),
            );
            assert_eq!(n, 12);
            assert_eq!(
                runs,
                [(9, 12), (3, 5), (7, 7), (1, 2), (0, 0), (14, 14)],
                "max cut the falling 14 13 after its first page"
            );
            assert_eq!(l.len(), 2);
            let left: Vec<usize> = l.iter().map(idx).collect();
            assert_eq!(left, [15, 13]);
        }
    }
}
