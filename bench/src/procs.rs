//! Child processes the benchmark starts (agents, floor servers), and what `/proc` says about
//! them.
//!
//! Every long-lived child is stopped however the benchmark ends:
//! - [`Spawned`] kills and reaps its process when dropped (normal end, error, panic);
//! - every live child is also listed in a registry that [`kill_all_registered`] empties, which
//!   the Ctrl-C / SIGTERM handler calls before exiting;
//! - on Linux children are started through `setpriv --pdeathsig KILL` when it is installed, so
//!   the kernel kills them even if the benchmark itself is SIGKILLed. The parent-death signal
//!   fires when the *thread* that spawned the child exits, so children are only spawned from
//!   the main thread.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};

/// Pids of the children alive right now.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<u32>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A directory to delete if the benchmark is interrupted (exiting skips destructors).
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Registers the temporary directory [`kill_all_registered`] removes.
pub fn register_scratch(dir: &Path) {
    *SCRATCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir.to_path_buf());
}

/// Kills every registered child (SIGKILL) and removes the scratch directory. For the signal
/// handler: the process exits next, so the children are reaped by init.
pub fn kill_all_registered() {
    for pid in live().drain(..) {
        kill(pid);
    }
    let scratch = SCRATCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(unix)]
fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(not(unix))]
fn kill(_pid: u32) {}

/// `setpriv`, when installed and able to set a parent-death signal.
fn setpriv() -> Option<&'static Path> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
}

/// A command for `program` that dies with the benchmark (see the module docs).
pub fn command(program: &Path) -> Command {
    match setpriv() {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// A started child. Killed and reaped when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    /// The first line the child printed (e.g. `listening on 127.0.1.1:20000`).
    pub first_line: String,
    /// Where its stderr goes.
    log: PathBuf,
}

/// Starts `cmd` (stdout piped, stderr to `log`) without waiting for it to be ready: see
/// [`Spawned::ready`].
///
/// # Errors
/// The program cannot be started or the log file created.
pub fn start(mut cmd: Command, log: &Path) -> anyhow::Result<Spawned> {
    let log_file = std::fs::File::create(log)
        .with_context(|| format!("failed to create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    let child = cmd
        .spawn()
        .with_context(|| format!("failed to start {:?}", cmd.get_program()))?;
    live().push(child.id());
    Ok(Spawned {
        child,
        first_line: String::new(),
        log: log.to_path_buf(),
    })
}

impl Spawned {
    /// Waits for the child's first stdout line (its "ready" signal), then closes its stdout.
    ///
    /// # Errors
    /// The child exited before printing a line (its log is quoted).
    pub fn ready(&mut self) -> anyhow::Result<()> {
        if let Some(stdout) = self.child.stdout.take() {
            BufReader::new(stdout).read_line(&mut self.first_line)?;
        }
        self.first_line = self.first_line.trim().to_owned();
        if self.first_line.is_empty() {
            let log_text = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!(
                "a child process exited before it was ready: {}",
                log_text.trim()
            );
        }
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address in a `listening on ADDR` first line.
    ///
    /// # Errors
    /// The line says something else.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.first_line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected first line {:?}", self.first_line))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let pid = self.child.id();
        live().retain(|p| *p != pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops many children: SIGKILL to all first, then reap, so 1,000 agents stop in one pass.
pub fn stop_all(children: Vec<Spawned>) {
    for c in &children {
        kill(c.pid());
    }
    drop(children);
}

/// Raises the soft open-files limit to the hard limit; children inherit it. Returns the new
/// soft limit.
#[cfg(unix)]
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current
}

/// Raises the soft open-files limit (no-op here).
#[cfg(not(unix))]
pub fn raise_nofile_limit() -> Option<u64> {
    None
}

/// A moment's view of a process from `/proc` (Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// CPU time of the live threads (`schedstat`, nanoseconds), else user + system time
    /// from `stat` (clock ticks).
    pub cpu: Duration,
    /// Voluntary context switches summed over all threads: each one is a thread going to
    /// sleep, so the count between two samples is the number of wake-ups.
    pub voluntary_switches: u64,
    /// Involuntary context switches summed over all threads.
    pub involuntary_switches: u64,
    /// Threads.
    pub threads: u64,
}

fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn clock_ticks() -> u64 {
    #[cfg(unix)]
    {
        rustix::param::clock_ticks_per_second().max(1)
    }
    #[cfg(not(unix))]
    {
        100
    }
}

/// Fields of `/proc/PID/stat` after the command name, numbered as in proc(5) minus 3.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    Some(
        after
            .split_whitespace()
            .skip(1) // state
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn ticks(t: u64) -> Duration {
    Duration::from_secs_f64(t as f64 / clock_ticks() as f64)
}

/// Reads `/proc/PID/status`, `/proc/PID/stat` and every `/proc/PID/task/*/status`.
///
/// # Errors
/// The process is gone or this is not Linux.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let stat = stat_fields(&pid.to_string()).context("cannot read /proc/PID/stat")?;
    // utime and stime are fields 14 and 15 of proc(5): 11 and 12 here.
    let cpu = ticks(stat.get(11).copied().unwrap_or(0) + stat.get(12).copied().unwrap_or(0));
    let mut s = ProcSample {
        rss_kib: status_field(&status, "VmRSS").unwrap_or(0),
        cpu,
        ..ProcSample::default()
    };
    let mut on_cpu_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        s.threads += 1;
        // The first field is the thread's time on a CPU in nanoseconds: far finer than the
        // 10 ms ticks of /proc/PID/stat, which an idle minute would round to zero.
        if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        {
            on_cpu_ns += ns;
        }
        s.voluntary_switches += status_field(&text, "voluntary_ctxt_switches").unwrap_or(0);
        s.involuntary_switches += status_field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    if on_cpu_ns > 0 {
        s.cpu = Duration::from_nanos(on_cpu_ns);
    }
    Ok(s)
}

/// CPU time of this process's children that have exited and been waited for (cutime +
/// cstime). The difference around one `wait` is that child's CPU time, at clock-tick
/// resolution (10 ms on Linux).
pub fn reaped_children_cpu() -> Duration {
    stat_fields("self")
        .map(|f| ticks(f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0)))
        .unwrap_or_default()
}

/// Size of a file in bytes, 0 when missing.
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The directory holding this executable (`target/release`).
///
/// # Errors
/// The executable path is unknown.
pub fn exe_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("executable has no directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse() {
        let text = "Name:\tx\nVmRSS:\t    5120 kB\nvoluntary_ctxt_switches:\t42\n";
        assert_eq!(status_field(text, "VmRSS"), Some(5120));
        assert_eq!(status_field(text, "voluntary_ctxt_switches"), Some(42));
        assert_eq!(status_field(text, "nonvoluntary_ctxt_switches"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
    }
}
