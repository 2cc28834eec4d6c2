//! A private php-fpm for tests: its own pool config, socket, pid and log in a temporary
//! directory, serving a copy of tests/php/, stopped (and the directory removed) on drop.
//! Needs php-fpm installed (Debian: `apt-get install php-fpm`); set PHP_FPM to pick a binary.
#![allow(dead_code)]

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PhpFpm {
    pub dir: PathBuf,
    /// `unix:DIR/php-fpm.sock` or `tcp:127.0.0.1:PORT`.
    pub addr: String,
    pub workers: usize,
    child: Child,
}

/// The php-fpm binary: $PHP_FPM, else the newest /usr/sbin/php-fpm*.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PHP_FPM") {
        return PathBuf::from(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php-fpm")))
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("php-fpm is not installed: run `apt-get install php-fpm` (or set PHP_FPM=/path/to/php-fpm)")
    })
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

pub struct Options {
    pub workers: usize,
    pub tcp: bool,
    pub max_requests: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { workers: 4, tcp: false, max_requests: 0 }
    }
}

impl PhpFpm {
    pub fn start(opts: Options) -> PhpFpm {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "heisen-fpm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php"), &dir.join("www")).unwrap();
        let (listen, addr) = if opts.tcp {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            (format!("127.0.0.1:{port}"), format!("tcp:127.0.0.1:{port}"))
        } else {
            let sock = dir.join("php-fpm.sock");
            (sock.display().to_string(), format!("unix:{}", sock.display()))
        };
        let root = is_root();
        let user = if root { "user = root\ngroup = root\n" } else { "" };
        let conf = format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\nlog_level = notice\ndaemonize = no\nprocess_control_timeout = 5s\n\n\
             [heisen]\n{user}listen = {listen}\nlisten.mode = 0666\nlisten.backlog = 1024\npm = static\npm.max_children = {w}\n\
             pm.max_requests = {mr}\nping.path = /ping\nping.response = pong\npm.status_path = /status\ncatch_workers_output = yes\n\
             decorate_workers_output = no\nclear_env = no\nrequest_terminate_timeout = 30s\n\
             php_admin_value[post_max_size] = 1G\nphp_admin_value[memory_limit] = 512M\nphp_admin_flag[log_errors] = on\n\
             php_admin_value[output_buffering] = 4096\n",
            d = dir.display(),
            w = opts.workers,
            mr = opts.max_requests,
        );
        std::fs::write(dir.join("php-fpm.conf"), conf).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("-y").arg(dir.join("php-fpm.conf")).arg("-F");
        if root {
            cmd.arg("-R");
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn php-fpm");
        let fpm = PhpFpm { dir, addr, workers: opts.workers, child };
        fpm.wait_ready();
        fpm
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = match self.addr.strip_prefix("unix:") {
                Some(p) => UnixStream::connect(p).is_ok(),
                None => std::net::TcpStream::connect(self.addr.strip_prefix("tcp:").unwrap()).is_ok(),
            };
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "php-fpm did not start; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("php-fpm.log")).unwrap_or_default()
    }

    /// Absolute path of a script in the served copy of tests/php.
    pub fn script(&self, name: &str) -> String {
        self.dir.join("www").join(name).display().to_string()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Graceful reload (SIGUSR2): php-fpm re-executes itself and replaces its workers.
    pub fn reload(&self) {
        signal(self.pid(), "USR2");
    }
}

fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn is_root() -> bool {
    // Avoids libc in the tests: the effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        signal(self.pid(), "QUIT");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SHA-256 (FIPS 180-4), for checking bodies without a dependency.
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7].wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [t1.wrapping_add(t2), v[0], v[1], v[2], v[3].wrapping_add(t1), v[4], v[5], v[6]];
        }
        for i in 0..8 {
            h[i] = h[i].wrapping_add(v[i]);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}
