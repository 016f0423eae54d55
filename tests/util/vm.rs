//! Real machines: Debian virtual machines with real systemd, booted with qemu, for the VM
//! suite (`tests/vm/`). The only place where a test sends a real (non-dry-run) power action,
//! and only to the agent inside a VM booted here.
//!
//! - [`image`]: the disk (`packaging/vm/build-image`, cached under `target/vm-cache/`, keyed
//!   by what went into it) — `None` after a `SKIP:` when qemu, mmdebstrap or the archive is
//!   missing.
//! - [`Seed`]: per-run files on a small ext4 disk (`/dev/vdb`) whose `setup` script the guest
//!   runs at every boot before the agent starts, so the cached disk stays valid.
//! - [`Vm`]: one qemu process: a qcow2 overlay per run, the serial console in a log file, the
//!   agent's port forwarded to `127.0.0.1:PORT` (qemu's user-mode network, nothing else), and
//!   a control channel on the second serial port (a root shell service, not a login, so
//!   nobody is logged in unless a test says so). Killed on drop.
//!
//! Acceleration: `LIGHTSOUT_VM_ACCEL` (`tcg`, the default, or `kvm`). KVM is much faster where
//! it works; on the project's CI machines `/dev/kvm` exists but a stock Debian kernel hangs
//! early under it, so software emulation is the default.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::{Lab, closed_port, have, skip, skip_missing};

/// How long a boot may take to a serving agent before it counts as a hang: 22–30 s on a quiet
/// machine under TCG, but several minutes while other builds load the two cores.
pub const BOOT_PATIENCE: Duration = Duration::from_secs(600);

/// A bootable disk: kernel and initrd copied out of its `/boot`, and the qcow2 base image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Debian release (`bookworm`, `trixie`).
    pub release: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disk: PathBuf,
}

/// Where the layers are cached (outside git): `LIGHTSOUT_VM_CACHE`, or `target/vm-cache/`.
/// Another directory (an empty one) measures a cold build without losing the shared cache.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LIGHTSOUT_VM_CACHE").map_or_else(
        || crate::debs::repo().join("target/vm-cache"),
        PathBuf::from,
    )
}

/// Whether this machine can run the VM suite at all; says why not (`SKIP:`, or a panic under
/// `CI=true`) and returns false otherwise.
pub fn available() -> bool {
    if !crate::running_as_root() {
        skip("not root: building a Debian root file system (mmdebstrap, chroot) needs root");
        return false;
    }
    for (tool, arg, package) in [
        ("qemu-system-x86_64", "--version", "qemu-system-x86"),
        ("qemu-img", "--version", "qemu-utils"),
        ("mmdebstrap", "--version", "mmdebstrap"),
        ("mkfs.ext4", "-V", "e2fsprogs"),
    ] {
        if !have(tool, arg) {
            skip_missing(tool, &format!(".ci/run installs {package}"));
            return false;
        }
    }
    true
}

/// The disk for `release`, with the project's agent package installed and enabled
/// (`with_agent`) or without it. Built on first use, cached afterwards. `None` (after a
/// `SKIP:`) when the release cannot be fetched from the archive; under `CI=true` that fails.
///
/// # Panics
/// The build fails for another reason.
pub fn image(release: &str, with_agent: bool) -> Option<Image> {
    // One build per (release, kind) per process, different ones in parallel (the script
    // itself locks per release across processes).
    type Slot = Arc<OnceLock<Option<Image>>>;
    static BUILT: Mutex<Vec<(String, bool, Slot)>> = Mutex::new(Vec::new());
    let slot = {
        let mut built = BUILT.lock().unwrap();
        match built
            .iter()
            .find(|(r, a, _)| r == release && *a == with_agent)
        {
            Some((_, _, slot)) => Arc::clone(slot),
            None => {
                let slot = Slot::default();
                built.push((release.to_owned(), with_agent, Arc::clone(&slot)));
                slot
            }
        }
    };
    slot.get_or_init(|| build(release, with_agent)).clone()
}

fn build(release: &str, with_agent: bool) -> Option<Image> {
    let mut cmd = Command::new(crate::debs::repo().join("packaging/vm/build-image"));
    cmd.arg(release).arg(cache_dir());
    if with_agent {
        let debs = crate::debs::debs()?;
        cmd.arg(&debs.agent);
    }
    let started = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let unreachable = [
            "Failed to fetch",
            "Could not resolve",
            "Temporary failure resolving",
            "Unable to connect",
            "does not have a Release file",
            "apt-get update",
        ];
        if unreachable.iter().any(|m| stderr.contains(m)) {
            skip_missing(
                &format!("Debian {release} from the package archive"),
                &format!("build-image could not download it:\n{stderr}"),
            );
            return None;
        }
        panic!("packaging/vm/build-image {release} failed:\n{stderr}");
    }
    eprintln!(
        "vm: image {release} (agent: {with_agent}) ready in {:.1}s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("build-image printed no {name}=: {stdout}"))
    };
    Some(Image {
        release: release.to_owned(),
        kernel: field("kernel"),
        initrd: field("initrd"),
        disk: field("disk"),
    })
}

/// Per-run files for the guest: copied to the seed disk, which the guest mounts read-only at
/// `/run/vmtest-seed` and whose `setup` it runs (as root, `sh -e`) at every boot before the
/// agent starts.
#[derive(Debug, Default)]
pub struct Seed {
    files: Vec<(String, Vec<u8>)>,
    setup: String,
}

/// Where the seed disk is mounted inside the guest.
pub const SEED: &str = "/run/vmtest-seed";

impl Seed {
    /// A seed that installs `bundle` as `/etc/lightsout/agent-bundle.pem` (mode 600) at boot,
    /// as the rollout's `install -m 600` does.
    pub fn with_bundle(bundle: &Path) -> Self {
        let mut seed = Self::default();
        seed.file("agent-bundle.pem", &std::fs::read(bundle).unwrap());
        seed.setup(&format!(
            "install -m 600 {SEED}/agent-bundle.pem /etc/lightsout/agent-bundle.pem"
        ));
        seed
    }

    /// Adds a file (at `/run/vmtest-seed/NAME` in the guest; `NAME` may have directories).
    pub fn file(&mut self, name: &str, contents: &[u8]) -> &mut Self {
        self.files.push((name.to_owned(), contents.to_vec()));
        self
    }

    /// Appends shell lines to the boot-time `setup` script.
    pub fn setup(&mut self, lines: &str) -> &mut Self {
        self.setup.push_str(lines);
        self.setup.push('\n');
        self
    }

    /// Writes the seed disk image into `dir`.
    fn write(&self, dir: &Path) -> PathBuf {
        let root = dir.join("seed");
        std::fs::create_dir_all(&root).unwrap();
        let mut size = 16 << 20;
        for (name, contents) in &self.files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
            size += contents.len() as u64 * 2;
        }
        let setup = root.join("setup");
        std::fs::write(&setup, format!("#!/bin/sh\nset -e\n{}", self.setup)).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&setup, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let image = dir.join("seed.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(size)
            .unwrap();
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&root)
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkfs.ext4 seed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }
}

/// What the control channel's reader thread has seen.
#[derive(Default)]
struct Channel {
    /// How many times the guest's control service said `ready` (once per boot).
    ready: u32,
    /// Replies by command id: (exit status, output).
    replies: HashMap<u64, (i32, String)>,
    /// The connection ended (qemu exited).
    closed: bool,
}

/// One running VM. Killed (and its overlay deleted) on drop.
pub struct Vm {
    /// A name for messages (`bookworm-boot`).
    pub name: String,
    child: Child,
    dir: tempfile::TempDir,
    /// The host port forwarded to the guest's 7474.
    pub port: u16,
    /// When qemu was started.
    pub started: Instant,
    writer: UnixStream,
    channel: Arc<(Mutex<Channel>, Condvar)>,
    next_id: u64,
    /// `ready` count that the next command waits to exceed (set across reboots).
    boots_seen: u32,
    /// The boot (its `ready` count) whose seed has been applied.
    seeded: u32,
}

/// Which accelerator qemu uses: `LIGHTSOUT_VM_ACCEL` (`tcg` by default, or `kvm`).
pub fn accel() -> String {
    std::env::var("LIGHTSOUT_VM_ACCEL").unwrap_or_else(|_| "tcg".to_owned())
}

impl Vm {
    /// Boots `image` through a fresh qcow2 overlay with `seed` as `/dev/vdb`.
    ///
    /// # Panics
    /// qemu does not start, or its control channel never appears.
    pub fn boot(name: &str, image: &Image, seed: &Seed) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vm-{name}-"))
            .tempdir()
            .unwrap();
        let overlay = dir.path().join("run.qcow2");
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&image.disk)
            .arg(&overlay)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "qemu-img create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seed_img = seed.write(dir.path());
        let port = closed_port();
        let ctl = dir.path().join("ctl.sock");
        let console = dir.path().join("console.log");
        let accel = accel();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", &accel, "-m", "1024", "-smp", "1"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-monitor", "none"]);
        cmd.arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args([
                "-append",
                "root=/dev/vda rw console=ttyS0,115200 panic=-1 systemd.show_status=1",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2,cache=unsafe",
                overlay.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                seed_img.display()
            ))
            .arg("-nic")
            .arg(format!(
                "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:7474"
            ))
            .arg("-chardev")
            .arg(format!("file,id=con,path={}", console.display()))
            .args(["-serial", "chardev:con"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=ctl,path={},server=on,wait=off",
                ctl.display()
            ))
            .args(["-serial", "chardev:ctl"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("qemu.stderr")).unwrap(),
            ));
        let started = Instant::now();
        let mut child = cmd.spawn().expect("cannot start qemu-system-x86_64");
        let stream = loop {
            match UnixStream::connect(&ctl) {
                Ok(s) => break s,
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "qemu exited at once ({status}): {}",
                            std::fs::read_to_string(dir.path().join("qemu.stderr"))
                                .unwrap_or_default()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("qemu's control socket {}: {e}", ctl.display()),
            }
        };
        let channel = Arc::new((Mutex::new(Channel::default()), Condvar::new()));
        let reader = stream.try_clone().unwrap();
        let shared = Arc::clone(&channel);
        std::thread::spawn(move || read_channel(reader, &shared));
        eprintln!("vm {name}: qemu started ({accel}), agent on 127.0.0.1:{port}");
        Self {
            name: name.to_owned(),
            child,
            dir,
            port,
            started,
            writer: stream,
            channel,
            next_id: 1,
            boots_seen: 0,
            seeded: 0,
        }
    }

    /// `127.0.0.1:PORT`, the agent as the controller dials it.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The serial console so far (kernel, systemd, getty, wall messages).
    pub fn console(&self) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.dir.path().join("console.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    /// Runs `script` with bash as root inside the guest (through the control channel: no
    /// login session) and returns its exit status and output (stdout and stderr together).
    /// Waits for the guest's control service first (after a boot or [`Vm::expect_reboot`]).
    ///
    /// # Panics
    /// No answer within `patience` (or [`BOOT_PATIENCE`] for the service to come up).
    pub fn run_with(&mut self, script: &str, patience: Duration) -> (i32, String) {
        let boot = self.wait_control(script);
        if self.seeded != boot {
            // The control service starts early in the boot: the seed (the per-run files,
            // applied before the agent starts) may not be there yet.
            let (status, out) = self.send("systemctl start vmtest-seed.service", BOOT_PATIENCE);
            assert_eq!(status, 0, "vm {}: the seed failed: {out}", self.name);
            self.seeded = boot;
        }
        self.send(script, patience)
    }

    /// Waits for the guest's control service (of a new boot after [`Vm::expect_reboot`]);
    /// returns the boot's number.
    fn wait_control(&mut self, script: &str) -> u32 {
        let (lock, cond) = &*self.channel;
        let mut ch = lock.lock().unwrap();
        let boot_deadline = self.started.max(Instant::now()) + BOOT_PATIENCE;
        while ch.ready <= self.boots_seen {
            assert!(
                !ch.closed,
                "vm {}: qemu has exited; cannot run {script:?}",
                self.name
            );
            let left = boot_deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "vm {}: the guest's control channel never came up\nconsole:\n{}",
                self.name,
                tail(&self.console())
            );
            ch = cond.wait_timeout(ch, left).unwrap().0;
        }
        self.boots_seen = ch.ready - 1;
        ch.ready
    }

    /// Sends `script` and waits for its answer.
    fn send(&mut self, script: &str, patience: Duration) -> (i32, String) {
        let id = self.next_id;
        self.next_id += 1;
        let (lock, cond) = &*self.channel;
        let line = format!("{id} {}\n", base64(script.as_bytes()));
        self.writer.write_all(line.as_bytes()).unwrap();
        let deadline = Instant::now() + patience;
        let mut ch = lock.lock().unwrap();
        loop {
            if let Some(reply) = ch.replies.remove(&id) {
                return reply;
            }
            assert!(
                !ch.closed,
                "vm {}: qemu exited while running {script:?}",
                self.name
            );
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "vm {}: no answer within {patience:?} to {script:?}",
                self.name
            );
            ch = cond.wait_timeout(ch, left).unwrap().0;
        }
    }

    /// [`Vm::run_with`] with a minute of patience.
    pub fn run(&mut self, script: &str) -> (i32, String) {
        self.run_with(script, Duration::from_secs(60))
    }

    /// Runs `script` in the guest, asserts it succeeds, returns its output.
    pub fn sh(&mut self, script: &str) -> String {
        let (status, out) = self.run(script);
        assert_eq!(status, 0, "vm {}: `{script}` failed:\n{out}", self.name);
        out
    }

    /// The guest is about to reboot: the next command waits for its control service to come
    /// up again.
    pub fn expect_reboot(&mut self) {
        let ch = self.channel.0.lock().unwrap();
        self.boots_seen = ch.ready;
    }

    /// Waits (at most [`BOOT_PATIENCE`]) for the agent's first answer to an echo and returns
    /// how long after qemu's start it came.
    ///
    /// # Panics
    /// No answer in time, or qemu exited.
    pub fn wait_for_agent(&mut self, lab: &Lab) -> Duration {
        let deadline = self.started + BOOT_PATIENCE;
        loop {
            let run = lab.lightsout(&["--timeout", "3s", "echo", &self.target()]);
            if run.code == Some(0) {
                let at = self.started.elapsed();
                eprintln!(
                    "vm {}: first echo {:.1}s after qemu started",
                    self.name,
                    at.as_secs_f64()
                );
                return at;
            }
            assert!(
                self.exited().is_none(),
                "vm {}: qemu exited before the agent answered\nconsole:\n{}",
                self.name,
                tail(&self.console())
            );
            assert!(
                Instant::now() < deadline,
                "vm {}: no echo within {BOOT_PATIENCE:?}: {}\nconsole:\n{}",
                self.name,
                run.stderr,
                tail(&self.console())
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Whether qemu has exited (the guest powered off), with its exit status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `patience` for qemu to exit (the guest to power off); returns when (since
    /// `since`) it was seen gone, or `None` when it is still running.
    pub fn wait_exit(&mut self, since: Instant, patience: Duration) -> Option<Duration> {
        let deadline = Instant::now() + patience;
        loop {
            if self.exited().is_some() {
                return Some(since.elapsed());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of the console, for failure messages.
    pub fn console_tail(&self) -> String {
        tail(&self.console())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "vm {}: console ({}):\n{}",
                self.name,
                self.dir.path().display(),
                tail(&self.console())
            );
        }
    }
}

fn read_channel(stream: UnixStream, shared: &(Mutex<Channel>, Condvar)) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        let (lock, cond) = shared;
        let mut ch = lock.lock().unwrap();
        if text.ends_with("ready") {
            ch.ready += 1;
        } else {
            let mut parts = text.splitn(3, ' ');
            if let (Some(id), Some(status), out) = (parts.next(), parts.next(), parts.next()) {
                if let (Ok(id), Ok(status)) = (id.parse::<u64>(), status.parse::<i32>()) {
                    let out = unbase64(out.unwrap_or(""));
                    ch.replies.insert(id, (status, out));
                }
            }
        }
        cond.notify_all();
    }
    let (lock, cond) = shared;
    lock.lock().unwrap().closed = true;
    cond.notify_all();
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Standard base64, as the guest's `base64 -d` reads it.
fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unbase64(text: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_else(|e| {
            format!("<control channel: bad base64 from the guest: {e}>").into_bytes()
        });
    String::from_utf8_lossy(&bytes).into_owned()
}
