//! A slab with generation-checked keys: a freed slot is reused, and an old key to it no longer
//! matches, so a handle freed by an earlier callback can never reach its successor.

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Key {
    pub index: u32,
    pub gen: u32,
}

enum Entry<T> {
    Occupied { gen: u32, value: T },
    Free { gen: u32, next: u32 },
}

pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
}

const NONE: u32 = u32::MAX;

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab { entries: Vec::new(), free_head: NONE, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if self.free_head != NONE {
            let index = self.free_head;
            let e = &mut self.entries[index as usize];
            let (gen, next) = match *e {
                Entry::Free { gen, next } => (gen, next),
                Entry::Occupied { .. } => unreachable!("free list points at an occupied slot"),
            };
            self.free_head = next;
            *e = Entry::Occupied { gen, value };
            Key { index, gen }
        } else {
            let index = self.entries.len() as u32;
            self.entries.push(Entry::Occupied { gen: 0, value });
            Key { index, gen: 0 }
        }
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.index as usize) {
            Some(Entry::Occupied { gen, value }) if *gen == key.gen => Some(value),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize) {
            Some(Entry::Occupied { gen, value }) if *gen == key.gen => Some(value),
            _ => None,
        }
    }

    pub fn remove(&mut self, key: Key) -> Option<T> {
        let e = self.entries.get_mut(key.index as usize)?;
        match e {
            Entry::Occupied { gen, .. } if *gen == key.gen => {}
            _ => return None,
        }
        let next_gen = key.gen.wrapping_add(1);
        let old = std::mem::replace(e, Entry::Free { gen: next_gen, next: self.free_head });
        self.free_head = key.index;
        self.len -= 1;
        match old {
            Entry::Occupied { value, .. } => Some(value),
            Entry::Free { .. } => unreachable!(),
        }
    }

    /// Remove every entry, returning the values (to be dropped outside any borrow).
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for i in 0..self.entries.len() {
            if let Entry::Occupied { gen, .. } = self.entries[i] {
                if let Some(v) = self.remove(Key { index: i as u32, gen }) {
                    out.push(v);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_do_not_reach_new_values() {
        let mut s = Slab::new();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a.index, b.index);
        assert_eq!(s.get(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.drain(), vec!["b"]);
        assert_eq!(s.len(), 0);
    }
}
