use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn read_then_hup_in_order_for_write_and_close() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = pair();
    b.write_all(b"hello").unwrap();
    drop(b); // peer writes and closes before we poll: IN|RDHUP|HUP in one event
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let l2 = log.clone();
    let mut a2 = a.try_clone().unwrap();
    r.watch(a.as_raw_fd(), READ, Box::new(move |r, id, act| {
        match act {
            Action::Read => {
                let mut buf = [0u8; 64];
                loop {
                    match a2.read(&mut buf) {
                        Ok(0) => { l2.borrow_mut().push("eof".into()); break }
                        Ok(n) => l2.borrow_mut().push(String::from_utf8_lossy(&buf[..n]).into()),
                        Err(_) => break,
                    }
                }
            }
            other => { l2.borrow_mut().push(other.name().into()); r.unwatch(id); }
        }
        Flow::Done
    })).unwrap();
    r.run(RunMode::Default).unwrap();
    assert_eq!(*log.borrow(), vec!["hello", "eof", "HUP"]);
    assert_eq!(r.counters().read_with_hup, 1);
}

#[test]
fn again_redelivers_and_holds_hup_until_drained() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = pair();
    b.write_all(b"abc").unwrap();
    drop(b);
    let got = Rc::new(RefCell::new(Vec::<u8>::new()));
    let g = got.clone();
    let mut a2 = a.try_clone().unwrap();
    r.watch(a.as_raw_fd(), READ, Box::new(move |r, id, act| {
        match act {
            Action::Read => {
                let mut one = [0u8; 1];
                match a2.read(&mut one) {
                    Ok(1) => { g.borrow_mut().push(one[0]); return Flow::Again } // read one byte only
                    _ => {}
                }
            }
            Action::Hup => { g.borrow_mut().extend_from_slice(b"|HUP"); r.unwatch(id); }
            _ => {}
        }
        Flow::Done
    })).unwrap();
    r.run(RunMode::Default).unwrap();
    assert_eq!(&*got.borrow(), b"abc|HUP");
}

#[test]
fn done_without_draining_is_caught_by_fionread() {
    // A callback that claims Done after reading one byte: the reactor sees bytes left in the
    // socket and reads again before delivering the hang-up.
    let r = Reactor::new().unwrap();
    let (a, mut b) = pair();
    b.write_all(b"xyz").unwrap();
    drop(b);
    let got = Rc::new(RefCell::new(Vec::<u8>::new()));
    let g = got.clone();
    let mut a2 = a.try_clone().unwrap();
    r.watch(a.as_raw_fd(), READ, Box::new(move |r, id, act| {
        match act {
            Action::Read => { let mut one = [0u8; 1]; if let Ok(1) = a2.read(&mut one) { g.borrow_mut().push(one[0]) } }
            Action::Hup => { g.borrow_mut().extend_from_slice(b"|HUP"); r.unwatch(id); }
            _ => {}
        }
        Flow::Done
    })).unwrap();
    r.run(RunMode::Default).unwrap();
    assert_eq!(&*got.borrow(), b"xyz|HUP");
    assert_eq!(r.counters().hups_held, 2);
}

#[test]
fn timers_fire_in_order_and_repeat() {
    let r = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::<&str>::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let t1 = r.timer(Box::new(move |_, _| l1.borrow_mut().push("a")));
    let count = Rc::new(Cell::new(0));
    let c2 = count.clone();
    let t2 = r.timer(Box::new(move |r, id| { l2.borrow_mut().push("b"); c2.set(c2.get() + 1); if c2.get() == 3 { r.timer_free(id) } }));
    r.timer_start(t1, 300, 0); // far enough that three repeats of t2 come first even on a loaded machine
    r.timer_start(t2, 1, 5);
    r.run(RunMode::Default).unwrap();
    assert_eq!(*log.borrow(), vec!["b", "b", "b", "a"]);
}

#[test]
fn post_from_threads_runs_once_each_in_order() {
    let r = Reactor::new().unwrap();
    let remote = r.remote();
    let out = Arc::new(Mutex::new(Vec::new()));
    r.hold();
    let o = out.clone();
    let t = std::thread::spawn(move || {
        for i in 0..1000 {
            let o = o.clone();
            remote.post(Box::new(move |r| { o.lock().unwrap().push(i); if i == 999 { r.release() } })).unwrap();
        }
    });
    r.run(RunMode::Default).unwrap();
    t.join().unwrap();
    assert_eq!(*out.lock().unwrap(), (0..1000).collect::<Vec<_>>());
}

#[test]
fn run_inside_callback_is_reentrant_and_close_inside_is_deferred() {
    let r = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    let t = r.timer(Box::new(move |r, _| {
        *s.borrow_mut() = Some(matches!(r.run(RunMode::NoWait), Err(RunError::Reentrant)));
        r.close(); // immediate: nothing else runs, the loop returns after this callback
        assert!(r.is_closed());
    }));
    r.timer_start(t, 0, 0);
    r.run(RunMode::Default).unwrap();
    assert_eq!(*seen.borrow(), Some(true));
    assert!(r.is_closed());
    assert!(matches!(r.run(RunMode::Default), Err(RunError::Closed)));
}

#[test]
fn many_timers() {
    let r = Reactor::new().unwrap();
    let fired = Rc::new(Cell::new(0u32));
    let ids: Vec<_> = (0..100_000u64).map(|i| {
        let f = fired.clone();
        let id = r.timer(Box::new(move |_, _| f.set(f.get() + 1)));
        r.timer_start(id, 1 + i % 5, 0);
        id
    }).collect();
    for id in ids.iter().step_by(2) { r.timer_stop(*id); }
    r.run(RunMode::Default).unwrap();
    assert_eq!(fired.get(), 50_000);
}
