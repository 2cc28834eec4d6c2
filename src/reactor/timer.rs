//! Timers: a binary heap of deadlines with lazy deletion and lazy re-arm.
//!
//! * Start/re-arm to a *later* deadline (the common case: an idle timeout pushed forward on every
//!   read) only records the new deadline; the heap entry stays and is re-pushed when it pops
//!   early. That makes re-arm O(1).
//! * Re-arm to an earlier deadline pushes a new entry; the old one becomes stale and is skipped.
//! * Stop only marks the timer; stale entries are dropped when they pop, and the heap is rebuilt
//!   if stale entries ever outnumber live ones, so memory stays proportional to live timers
//!   (1,000,000 live timers cost about 1,000,000 × (slot + heap entry)).

use super::slab::{Key, Slab};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub(crate) struct TimerSlot<F> {
    /// Absolute deadline in ms (valid when `active`).
    pub deadline: u64,
    pub repeat: u64,
    pub active: bool,
    /// Deadline of this timer's live heap entry, if it has one.
    heap_deadline: Option<u64>,
    pub keeps_alive: bool,
    /// The callback; `None` while it runs.
    pub callback: Option<F>,
}

pub(crate) struct Timers<F> {
    slots: Slab<TimerSlot<F>>,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>, // (deadline, index, gen)
    active_refs: usize,
}

impl<F> Timers<F> {
    pub fn new() -> Timers<F> {
        Timers { slots: Slab::new(), heap: BinaryHeap::new(), active_refs: 0 }
    }

    pub fn add(&mut self, callback: F) -> Key {
        self.slots.insert(TimerSlot {
            deadline: 0,
            repeat: 0,
            active: false,
            heap_deadline: None,
            keeps_alive: true,
            callback: Some(callback),
        })
    }

    /// True when no timer entry is pending (nothing can fire).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Live timers that keep the loop running.
    pub fn active_refs(&self) -> usize {
        self.active_refs
    }

    pub fn start(&mut self, key: Key, deadline: u64, repeat: u64) -> bool {
        let Some(t) = self.slots.get_mut(key) else { return false };
        if !t.active && t.keeps_alive {
            self.active_refs += 1;
        }
        t.active = true;
        t.deadline = deadline;
        t.repeat = repeat;
        match t.heap_deadline {
            Some(hd) if hd <= deadline => {} // the entry will pop early and be re-pushed
            _ => {
                t.heap_deadline = Some(deadline);
                self.heap.push(Reverse((deadline, key.index, key.gen)));
                self.maybe_compact();
            }
        }
        true
    }

    pub fn stop(&mut self, key: Key) -> bool {
        let Some(t) = self.slots.get_mut(key) else { return false };
        if t.active && t.keeps_alive {
            self.active_refs -= 1;
        }
        t.active = false;
        true
    }

    pub fn set_ref(&mut self, key: Key, keeps_alive: bool) {
        let Some(t) = self.slots.get_mut(key) else { return };
        if t.active && t.keeps_alive != keeps_alive {
            if keeps_alive {
                self.active_refs += 1;
            } else {
                self.active_refs -= 1;
            }
        }
        t.keeps_alive = keeps_alive;
    }

    /// Remove a timer; returns its callback unless it is currently running (then the caller's
    /// running copy is dropped when it returns).
    pub fn remove(&mut self, key: Key) -> Option<Option<F>> {
        self.stop(key);
        self.slots.remove(key).map(|t| t.callback)
    }

    pub fn is_active(&self, key: Key) -> bool {
        self.slots.get(key).is_some_and(|t| t.active)
    }

    /// Earliest deadline of an active timer (may be early for lazily re-armed timers, which is
    /// harmless: the loop wakes, re-pushes, and sleeps again).
    pub fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse((d, index, gen))) = self.heap.peek() {
            match self.slots.get_mut(Key { index, gen }) {
                Some(t) if t.heap_deadline == Some(d) => {
                    if t.active {
                        return Some(d);
                    }
                    t.heap_deadline = None; // stopped timer: drop its entry
                    self.heap.pop();
                }
                _ => {
                    self.heap.pop(); // stale entry
                }
            }
        }
        None
    }

    /// Pop one timer that is due at `now`: returns its key and takes its callback out.
    /// A repeating timer is re-armed before its callback runs; a one-shot becomes inactive.
    pub fn pop_due(&mut self, now: u64) -> Option<(Key, F)> {
        loop {
            let &Reverse((d, index, gen)) = self.heap.peek()?;
            if d > now {
                return None;
            }
            self.heap.pop();
            let key = Key { index, gen };
            let Some(t) = self.slots.get_mut(key) else { continue };
            if t.heap_deadline != Some(d) {
                continue; // stale entry
            }
            t.heap_deadline = None;
            if !t.active {
                continue;
            }
            if t.deadline > now {
                // lazily re-armed to later: push the real deadline
                t.heap_deadline = Some(t.deadline);
                self.heap.push(Reverse((t.deadline, index, gen)));
                continue;
            }
            if t.repeat > 0 {
                t.deadline = now + t.repeat;
                t.heap_deadline = Some(t.deadline);
                self.heap.push(Reverse((t.deadline, index, gen)));
            } else {
                t.active = false;
                if t.keeps_alive {
                    self.active_refs -= 1;
                }
            }
            let Some(cb) = t.callback.take() else { continue };
            return Some((key, cb));
        }
    }

    /// Give a callback back after it ran (if the timer still exists).
    pub fn restore(&mut self, key: Key, cb: F) -> Option<F> {
        match self.slots.get_mut(key) {
            Some(t) => {
                t.callback = Some(cb);
                None
            }
            None => Some(cb),
        }
    }

    pub fn drain(&mut self) -> Vec<F> {
        self.heap.clear();
        self.active_refs = 0;
        self.slots.drain().into_iter().filter_map(|t| t.callback).collect()
    }

    fn maybe_compact(&mut self) {
        if self.heap.len() > 1024 && self.heap.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            let live: Vec<_> = self
                .heap
                .drain()
                .filter(|Reverse((d, index, gen))| {
                    slots.get(Key { index: *index, gen: *gen }).is_some_and(|t| t.heap_deadline == Some(*d))
                })
                .collect();
            self.heap = live.into();
        }
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rearm_and_stop() {
        let mut t: Timers<u32> = Timers::new();
        let a = t.add(1);
        let b = t.add(2);
        let c = t.add(3);
        t.start(a, 30, 0);
        t.start(b, 10, 0);
        t.start(c, 20, 0);
        t.start(b, 40, 0); // pushed later: lazy
        t.stop(c);
        assert_eq!(t.active_refs(), 2);
        assert_eq!(t.pop_due(25).map(|x| x.1), None);
        let (k, cb) = t.pop_due(30).unwrap();
        assert_eq!((k, cb), (a, 1));
        assert!(t.restore(k, cb).is_none());
        assert_eq!(t.pop_due(39).map(|x| x.1), None);
        assert_eq!(t.pop_due(40).map(|x| x.1), Some(2));
        assert_eq!(t.active_refs(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn repeating_and_earlier_rearm() {
        let mut t: Timers<u32> = Timers::new();
        let a = t.add(7);
        t.start(a, 100, 50);
        t.start(a, 10, 50); // earlier: new entry, old becomes stale
        let (k, cb) = t.pop_due(10).unwrap();
        t.restore(k, cb);
        assert_eq!(t.next_deadline(), Some(60));
        assert_eq!(t.pop_due(99).map(|x| x.1), Some(7)); // at 60
        assert!(t.is_active(a));
    }

    #[test]
    fn compaction_keeps_memory_proportional() {
        let mut t: Timers<()> = Timers::new();
        let keys: Vec<_> = (0..100).map(|_| t.add(())).collect();
        for round in 0..1000u64 {
            for k in &keys {
                t.start(*k, 1_000_000 - round * 10, 0); // always earlier: a new entry each time
            }
        }
        assert!(t.heap_len() <= 2 * 100 + 64 + 1024, "heap {}", t.heap_len());
    }
}
