//! One million live timers: start, re-arm (later and earlier), stop, fire. Correctness and a
//! bound on memory per timer; speed is measured in benchmarks, not here.

use heisen::reactor::{Reactor, RunMode};
use std::cell::Cell;
use std::rc::Rc;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

#[test]
fn a_million_timers() {
    const N: u64 = 1_000_000;
    let r = Reactor::new().unwrap();
    let fired = Rc::new(Cell::new(0u64));
    let before = rss_kib();
    let ids: Vec<_> = (0..N)
        .map(|i| {
            let f = fired.clone();
            let id = r.timer(Box::new(move |_, _| f.set(f.get() + 1)));
            r.timer_start(id, 60_000 + i % 1000, 0); // far away
            id
        })
        .collect();
    let per_timer = (rss_kib() - before) * 1024 / N;
    // re-arm every timer later (the cheap path), then half of them earlier, then stop a quarter
    for (i, id) in ids.iter().enumerate() {
        r.timer_start(*id, 120_000 + (i as u64 % 1000), 0);
    }
    for id in ids.iter().step_by(2) {
        r.timer_start(*id, 1 + (id_hash(id) % 20), 0);
    }
    for id in ids.iter().step_by(4) {
        r.timer_stop(*id);
    }
    // run until the near ones fired; the far ones stay pending
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fired.get() < N / 4 && std::time::Instant::now() < deadline {
        r.run(RunMode::Once).unwrap();
    }
    assert_eq!(fired.get(), N / 4, "every second timer was re-armed near, every fourth of all stopped");
    for id in &ids {
        r.timer_free(*id);
    }
    eprintln!("1,000,000 timers: about {per_timer} bytes each");
    assert!(per_timer < 200, "{per_timer} bytes per timer");
}

fn id_hash(id: &heisen::reactor::TimerId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}
