//! The machines the procedures run on: the administrator's laptop and the lab machines, each
//! a network namespace of its own with a mount namespace in which `/etc` and `/var` are
//! overlays whose changes stay in the machine's directory. So `/etc/lightsout/agent.toml` and
//! `/var/lib/lightsout/crl.pem` mean what the README says, on that machine only, and the
//! host's own `/etc` and `/var` are never written. The lab machines hang off a bridge in the
//! laptop's namespace; nothing touches the host's network namespace.
//!
//! Everything is torn down by drop guards (agents, then the namespaces' holder processes,
//! then the network namespaces, then the directories), also when the test panics.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use lightsout_tests::AgentProcess;

/// The host's programs, after the machine's own (`usr/bin` of its root) and the stand-ins.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs that must never run on this host from a procedure: they are shadowed by a
/// stand-in that fails, naming the command. `sudo` is the exception: it runs its arguments
/// (the test is root), so that what follows it meets the same stand-ins.
const FORBIDDEN: &[&str] = &[
    "systemctl",
    "service",
    "dpkg",
    "apt",
    "apt-get",
    "shutdown",
    "reboot",
    "poweroff",
    "halt",
    "init",
    "telinit",
    "loginctl",
    "ssh",
    "scp",
];

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `dev` in namespace `ns` given `address/24` and brought up.
fn bring_up(ns: &str, dev: &str, address: Ipv4Addr) -> Result<(), String> {
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{address}/24"),
        "dev",
        dev,
    ])?;
    ip(&["-n", ns, "link", "set", dev, "up"])
}

/// The network namespaces; deleted on drop.
#[derive(Debug)]
pub struct Network {
    prefix: String,
    namespaces: Vec<String>,
}

impl Network {
    /// No namespace yet; `prefix` makes their names unique to this test process.
    pub fn new(prefix: String) -> Self {
        Self {
            prefix,
            namespaces: Vec::new(),
        }
    }

    /// A new namespace `ns`, remembered so that it is removed with the lab.
    fn namespace(&mut self, ns: String) -> Result<String, String> {
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }

    /// The laptop's namespace, with the bridge `br0` holding `address/24`.
    pub fn laptop(&mut self, address: Ipv4Addr) -> Result<String, String> {
        let ns = self.namespace(format!("{}-laptop", self.prefix))?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        bring_up(&ns, "br0", address)?;
        Ok(ns)
    }

    /// A lab machine's namespace, its `eth0` holding `address/24`, plugged into the laptop's
    /// bridge (`laptop` is its namespace).
    pub fn machine(&mut self, laptop: &str, address: Ipv4Addr) -> Result<String, String> {
        let n = self.namespaces.len();
        let ns = self.namespace(format!("{}-m{n}", self.prefix))?;
        let port = format!("port{n}");
        // Both ends are born inside their namespaces: the host never sees them.
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            laptop,
        ])?;
        ip(&["-n", laptop, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", laptop, "link", "set", &port, "up"])?;
        bring_up(&ns, "eth0", address)?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Network {
    fn delete(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.delete();
    }
}

/// One machine: its network namespace, a process holding its mount namespace, its directory
/// (`root/` the packages are extracted into, `home/` its `HOME`, `work/` the directory its
/// commands run in, `etc/` and `var/` what it wrote to `/etc` and `/var`), and its agent once
/// started.
pub struct Machine {
    /// `laptop`, or the inventory's name (`lab-01`).
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// Its network namespace.
    pub netns: String,
    dir: PathBuf,
    /// The agent `systemctl enable --now lightsout-agent` started (dropped first).
    pub agent: Option<AgentProcess>,
    holder: Child,
    /// Closing it ends the holder, also if the test process dies without unwinding.
    _holder_stdin: ChildStdin,
}

impl Machine {
    /// Sets up the machine's directory under `dir` and its mount namespace inside `netns`.
    pub fn start(
        name: &str,
        address: Ipv4Addr,
        netns: String,
        dir: PathBuf,
    ) -> Result<Self, String> {
        for sub in [
            "root",
            "home",
            "work",
            "etc",
            "var",
            ".etc-work",
            ".var-work",
            "stand-ins",
        ] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        for program in FORBIDDEN {
            write_script(
                &dir.join("stand-ins").join(program),
                &format!(
                    "#!/bin/sh\necho \"docs test: \\`{program} $*\\` must not run on this host, and \
                     the substitution table (tests/docs/rules.rs) has no rule for it\" >&2\nexit 127\n"
                ),
            )?;
        }
        write_script(&dir.join("stand-ins/sudo"), "#!/bin/sh\nexec \"$@\"\n")?;
        // `ip netns exec` gives a new mount namespace whose mounts do not propagate back to
        // the host; the overlays live there, held open by this shell until its stdin closes.
        let d = dir.display();
        let setup = format!(
            "set -e\n\
             mount -t overlay lightsout-docs -o lowerdir=/etc,upperdir={d}/etc,workdir={d}/.etc-work /etc\n\
             mount -t overlay lightsout-docs -o lowerdir=/var,upperdir={d}/var,workdir={d}/.var-work /var\n\
             echo ready\n\
             read _ || true\n"
        );
        let mut holder = Command::new("ip")
            .args(["netns", "exec", &netns, "sh", "-c", &setup])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        let holder_stdin = holder.stdin.take().ok_or("no stdin")?;
        let mut line = String::new();
        let stdout = holder.stdout.take().ok_or("no stdout")?;
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "{name}: could not set up its /etc and /var overlays: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            address,
            netns,
            dir,
            agent: None,
            holder,
            _holder_stdin: holder_stdin,
        })
    }

    /// Where its packages are extracted (`dpkg -i`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Its `HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// The directory its commands run in, where files carried to it land.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// What it wrote to `/etc` (the overlay's upper directory: read, never write it from
    /// outside).
    pub fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// `program` run inside the machine (its network and mount namespaces), in [`Self::work`],
    /// with only `env` and `PATH` in its environment.
    pub fn command_with(&self, program: &str, env: &[(String, String)]) -> Command {
        let mut cmd = Command::new("nsenter");
        // Entering a mount namespace moves the process to its root directory: `--wd` brings
        // it back to the machine's directory (without it, `cp x .` would write to the host's
        // `/`).
        let wd = format!("--wd={}", self.work().display());
        cmd.args([
            "-t",
            &self.holder.id().to_string(),
            "-m",
            "-n",
            &wd,
            "--",
            program,
        ])
        .current_dir(self.work())
        .env_clear()
        .env("PATH", self.path())
        .envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// A shell command line as the machine's administrator (root, `HOME` = [`Self::home`])
    /// types it: `sh -e -c SCRIPT`.
    pub fn shell(&self, script: &str) -> Command {
        let mut env = vec![
            ("HOME".to_owned(), self.home().display().to_string()),
            ("USER".to_owned(), "root".to_owned()),
            ("LOGNAME".to_owned(), "root".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ];
        // A cargo line finds the host's toolchain, not an empty one in the machine's HOME.
        for var in ["CARGO_HOME", "RUSTUP_HOME"] {
            if let Some(v) = std::env::var_os(var) {
                env.push((var.to_owned(), v.to_string_lossy().into_owned()));
            } else if let Some(home) = std::env::var_os("HOME") {
                let dir = if var == "CARGO_HOME" {
                    ".cargo"
                } else {
                    ".rustup"
                };
                env.push((
                    var.to_owned(),
                    Path::new(&home).join(dir).display().to_string(),
                ));
            }
        }
        let mut cmd = self.command_with("sh", &env);
        cmd.args(["-e", "-c", script]);
        cmd
    }

    /// Runs `program ARGS` inside the machine and requires success.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let out = self
            .command_with(program, &[])
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn path(&self) -> String {
        let root = self.root();
        format!(
            "{}:{}:{}:{SYSTEM_PATH}",
            root.join("usr/bin").display(),
            root.join("usr/sbin").display(),
            self.dir.join("stand-ins").display()
        )
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The agent first (it is inside the namespaces), then the holder.
        self.agent.take();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn write_script(path: &Path, body: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}

/// Labs made by this process so far: their namespaces' names differ (tests run in parallel).
static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The whole lab. Fields drop in order: machines (agents, holders), then the namespaces, then
/// the directories.
pub struct Lab {
    /// The laptop first, then the lab machines in the inventory's order.
    pub machines: Vec<Machine>,
    net: Network,
    dir: tempfile::TempDir,
}

impl Lab {
    /// The laptop alone, at `address` on the lab's /24.
    pub fn with_laptop(address: Ipv4Addr) -> Result<Self, String> {
        let mut lab = Self {
            machines: Vec::new(),
            net: Network::new(format!(
                "lsdocs-{}-{}",
                std::process::id(),
                LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        let ns = lab.net.laptop(address)?;
        let dir = lab.dir.path().join("laptop");
        lab.machines
            .push(Machine::start("laptop", address, ns, dir)?);
        Ok(lab)
    }

    /// Adds a lab machine `name` at `address`, on the laptop's bridge.
    pub fn add_machine(&mut self, name: &str, address: Ipv4Addr) -> Result<(), String> {
        let laptop = self.machines[0].netns.clone();
        let ns = self.net.machine(&laptop, address)?;
        let dir = self.dir.path().join(name);
        self.machines.push(Machine::start(name, address, ns, dir)?);
        Ok(())
    }

    /// Stops the agents and the namespaces now (what dropping does), so that the caller can
    /// check what is left on the host.
    pub fn shut_down(&mut self) {
        self.machines.clear();
        self.net.delete();
    }

    /// The laptop.
    pub fn laptop(&self) -> &Machine {
        &self.machines[0]
    }
}
