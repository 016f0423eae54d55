//! `udp-sink ADDR:PORT SECONDS`: a test helper that receives UDP datagrams (Wake-on-LAN
//! magic packets) and prints each as `SOURCE HEX` on its own line, after a first `ready`
//! line. Exits after SECONDS. Run inside a test's network namespace with `ip netns exec`.

use std::io::Write;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(secs)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: udp-sink ADDR:PORT SECONDS");
        std::process::exit(2);
    };
    let socket = match UdpSocket::bind(addr.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-sink: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let mut buf = [0u8; 2048];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = socket.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "{from} {hex}");
            let _ = out.flush();
        }
    }
}
