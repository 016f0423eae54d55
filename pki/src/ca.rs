//! The lab CA: creating it, issuing agent and controller certificates, and the first-run
//! setup that lets the quickstart run with no manual certificate step.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use time::OffsetDateTime;

use crate::home::{Home, HomeState, Side};
use crate::{PkiError, Result, load};

/// How long the CA is valid.
const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// Default validity of agent and controller certificates.
pub const DEFAULT_VALIDITY_DAYS: u32 = 825;
pub use crate::der::{ROLE_URI_PREFIX, hex};

/// Which side a certificate is for. The extended key usage differs, so an agent's certificate
/// cannot be used to control other agents and a controller's cannot impersonate an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A server certificate (EKU serverAuth) for `lightsout-agent`.
    Agent,
    /// A client certificate (EKU clientAuth) for the `lightsout` controller.
    Controller,
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// Agent or controller.
    pub kind: CertKind,
    /// Common name; for an agent also a DNS SAN when it is a valid DNS name.
    pub name: String,
    /// Extra IP address SANs (agents: the addresses controllers will dial).
    pub ips: Vec<IpAddr>,
    /// Extra DNS SANs.
    pub dns: Vec<String>,
    /// Role carried as a SAN URI `urn:lightsout:role:ROLE` (controllers).
    pub role: Option<String>,
    /// Validity, counted from now (backdated one hour for clock skew).
    pub validity_days: u32,
    /// Start of validity; `None` means now minus one hour. Tests use it to make certificates
    /// that are not yet valid.
    pub not_before: Option<OffsetDateTime>,
}

impl IssueOptions {
    /// Defaults for a certificate of `kind` named `name`.
    pub fn new(kind: CertKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            ips: Vec::new(),
            dns: Vec::new(),
            role: None,
            validity_days: DEFAULT_VALIDITY_DAYS,
            not_before: None,
        }
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate (DER), lower-case hex.
    pub fingerprint: String,
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
}

impl Issued {
    /// Writes the certificate (mode 0644) and the key (mode 0600).
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<()> {
        write_file(key, self.key_pem.as_bytes(), true)?;
        write_file(cert, self.cert_pem.as_bytes(), false)
    }
}

impl Issued {
    /// Writes one file (mode 0600) holding this certificate, the CA certificate and the
    /// private key — everything a machine needs, in one copy.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_bundle(&self, path: &Path, ca_cert_pem: &str) -> Result<()> {
        let text = format!(
            "# lightsout bundle: this machine's certificate, the lab CA certificate, the private key.\n\
             # Keep it private (mode 0600).\n{}{}{}",
            self.cert_pem, ca_cert_pem, self.key_pem
        );
        write_file(path, text.as_bytes(), true)
    }
}

/// The lab certificate authority.
#[derive(Debug)]
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA with a fresh ECDSA P-256 key.
    ///
    /// # Errors
    /// Key or certificate generation failed.
    pub fn create(common_name: &str) -> Result<(Self, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "lightsout");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let cert_pem = cert.pem();
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok((Self { cert_pem, issuer }, key_pem))
    }

    /// Loads the CA certificate and key from PEM files.
    ///
    /// # Errors
    /// A file cannot be read or is not a CA certificate / key, or the key is readable by group
    /// or others.
    pub fn load(cert: &Path, key: &Path) -> Result<Self> {
        load::check_private(key)?;
        let cert_pem = load::text(cert)?;
        let key_pem = load::text(key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Pem {
            path: key.to_path_buf(),
            what: format!("not a usable private key: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::Pem {
            path: cert.to_path_buf(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
        Ok(Self { cert_pem, issuer })
    }

    /// Loads the CA of a home directory.
    ///
    /// # Errors
    /// See [`Ca::load`].
    pub fn load_home(home: &Home) -> Result<Self> {
        Self::load(&home.ca_cert(), &home.ca_key())
    }

    /// The signing side of the CA (for CRLs).
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate signed by this CA.
    ///
    /// # Errors
    /// A name is not valid in a certificate, or signing failed.
    pub fn issue(&self, opts: &IssueOptions) -> Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, opts.name.as_str());
        dn.push(DnType::OrganizationName, "lightsout");
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial());
        let start = opts
            .not_before
            .unwrap_or_else(|| OffsetDateTime::now_utc() - time::Duration::hours(1));
        params.not_before = start;
        params.not_after = start + time::Duration::days(i64::from(opts.validity_days));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let mut sans = Vec::new();
        match opts.kind {
            CertKind::Agent => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                for name in std::iter::once(&opts.name).chain(&opts.dns) {
                    match name.parse::<IpAddr>() {
                        Ok(ip) => sans.push(SanType::IpAddress(ip)),
                        Err(_) => sans.push(SanType::DnsName(
                            name.clone()
                                .try_into()
                                .map_err(|_| PkiError::BadName(name.clone()))?,
                        )),
                    }
                }
            }
            CertKind::Controller => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        sans.extend(opts.ips.iter().copied().map(SanType::IpAddress));
        if let Some(role) = &opts.role {
            let uri = format!("{ROLE_URI_PREFIX}{role}");
            sans.push(SanType::URI(
                uri.try_into()
                    .map_err(|_| PkiError::BadName(role.clone()))?,
            ));
        }
        params.subject_alt_names = sans;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| hex(&s.to_bytes()))
            .unwrap_or_default();
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            fingerprint: crate::der::fingerprint(cert.der()),
            not_after_unix: params.not_after.unix_timestamp(),
        })
    }
}

/// What [`ensure_local`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Everything was there.
    Nothing,
    /// The home was empty: a new lab CA and this machine's agent and controller
    /// certificates were created. The binaries say so on stderr ([`new_ca_notice`]).
    NewCa,
    /// The CA was there; this side's certificate and key were issued.
    Issued,
}

/// The one line the binaries print on stderr after [`Setup::NewCa`].
pub fn new_ca_notice(home: &Home) -> String {
    format!(
        "created a new lab CA and this machine's certificates in {dir}; to join an existing \
         lab instead, remove it and copy there the lab's ca.pem with this machine's \
         certificate and key (or pass --bundle FILE)",
        dir = home.dir().display()
    )
}

/// Makes the home ready for `side` following the rules of [`HomeState`]: an empty home gets
/// a new CA and both of this machine's certificates (the quickstart's first run); a home with
/// the CA gets this side's certificate if both its files are absent; a ready home is left
/// alone; a partial one is an error and nothing is changed. No existing file is overwritten.
/// Safe to call from several processes at once: the first one creates, the others wait.
///
/// # Errors
/// [`PkiError::Incomplete`] for a partial home; a file cannot be written; another process
/// holds the lock too long.
pub fn ensure_local(home: &Home, side: Side) -> Result<Setup> {
    // Judged without the lock first (the usual case: ready); anything else is judged again
    // under the lock, since another process may be half-way through creating the home.
    if let Ok(HomeState::Ready) = home.check(side) {
        return Ok(Setup::Nothing);
    }
    create_private_dir(home.dir())?;
    let _lock = InitLock::acquire(home.dir())?;
    match home.check(side)? {
        HomeState::Ready => Ok(Setup::Nothing),
        HomeState::Empty => {
            let host = local_hostname();
            let (ca, key_pem) = Ca::create(&format!("lightsout lab CA ({host})"))?;
            write_new(&home.ca_key(), key_pem.as_bytes(), true)?;
            write_new(&home.ca_cert(), ca.cert_pem().as_bytes(), false)?;
            tracing::info!(home = %home.dir().display(), "created a new lightsout CA");
            issue_local(home, &ca, Side::Agent)?;
            issue_local(home, &ca, Side::Controller)?;
            Ok(Setup::NewCa)
        }
        HomeState::CanIssue => {
            let ca = Ca::load_home(home)?;
            issue_local(home, &ca, side)?;
            Ok(Setup::Issued)
        }
    }
}

/// Creates a new CA in an empty home (`lightsout pki init`), with this machine's agent and
/// controller certificates.
///
/// # Errors
/// [`PkiError::CaExists`] when the home has a CA (or any part of a lab).
pub fn init(home: &Home) -> Result<()> {
    if home.ca_cert().exists() || home.ca_key().exists() {
        return Err(PkiError::CaExists(home.dir().to_path_buf()));
    }
    match ensure_local(home, Side::Controller)? {
        Setup::NewCa => Ok(()),
        // Another process created it between our look and the lock.
        Setup::Nothing | Setup::Issued => Err(PkiError::CaExists(home.dir().to_path_buf())),
    }
}

/// Issues this machine's certificate for `side` into the home (both files absent).
fn issue_local(home: &Home, ca: &Ca, side: Side) -> Result<()> {
    let host = local_hostname();
    let opts = match side {
        Side::Agent => {
            let mut opts = IssueOptions::new(CertKind::Agent, host);
            opts.dns = vec!["localhost".into()];
            opts.ips = vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ];
            opts
        }
        Side::Controller => {
            let mut opts =
                IssueOptions::new(CertKind::Controller, format!("{}@{host}", local_user()));
            opts.role = Some("admin".into());
            opts
        }
    };
    let issued = ca.issue(&opts)?;
    let (cert, key) = home.pair(side);
    write_new(&key, issued.key_pem.as_bytes(), true)?;
    write_new(&cert, issued.cert_pem.as_bytes(), false)?;
    record_issued(home, &opts, &issued)?;
    tracing::info!(name = %opts.name, side = side.as_str(), "issued this machine's certificate");
    Ok(())
}

/// Writes a file that must not exist yet (a key is never overwritten behind the user's back).
fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<()> {
    if path.exists() {
        return Err(PkiError::Exists(path.to_path_buf()));
    }
    write_file(path, contents, private)
}

/// This machine's host name, sanitised to something valid in a DNS SAN.
pub fn local_hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean.to_ascii_lowercase()
    }
}

fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "admin".into())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails when the OS has no entropy source at all.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        bytes.copy_from_slice(&nanos.to_be_bytes());
    }
    bytes[0] &= 0x7f; // positive, as RFC 5280 requires
    bytes[0] |= 0x01; // and without a leading zero byte
    SerialNumber::from_slice(&bytes)
}

/// Creates `dir` (and parents) with mode 0700 on Unix.
fn create_private_dir(dir: &Path) -> Result<()> {
    let io = |source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Writes `contents` atomically (temporary file, then rename); private files get mode 0600
/// from the moment they exist, never wider.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<()> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let tmp = tmp_name(path);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(&tmp).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// A lock directory in the home: `mkdir` is atomic on every platform.
struct InitLock(PathBuf);

impl InitLock {
    fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(".init.lock");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::time::Instant::now() > deadline {
                        return Err(PkiError::Locked(path));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => return Err(PkiError::Io { path, source }),
            }
        }
    }
}

impl Drop for InitLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Appends a freshly issued certificate to the home's index.
///
/// # Errors
/// The index cannot be written.
pub fn record_issued(home: &Home, opts: &IssueOptions, issued: &Issued) -> Result<()> {
    let record = crate::index::IssuedRecord {
        name: opts.name.clone(),
        kind: match opts.kind {
            CertKind::Agent => "agent".into(),
            CertKind::Controller => "controller".into(),
        },
        role: opts.role.clone(),
        ips: opts.ips.clone(),
        dns: opts.dns.clone(),
        serial: issued.serial.clone(),
        fingerprint: issued.fingerprint.clone(),
        issued_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
        not_after_unix: issued.not_after_unix,
    };
    crate::index::append_line(&home.issued_index(), &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_creates_everything_once_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        assert_eq!(ensure_local(&home, Side::Agent).unwrap(), Setup::NewCa);
        assert_eq!(
            ensure_local(&home, Side::Controller).unwrap(),
            Setup::Nothing,
            "second run creates nothing"
        );
        for p in [home.ca_cert(), home.agent_cert(), home.controller_cert()] {
            assert!(load::certs(&p).is_ok(), "{}", p.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [home.ca_key(), home.agent_key(), home.controller_key()] {
                let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
            let mode = fs::metadata(home.dir()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let home = home.clone();
                std::thread::spawn(move || ensure_local(&home, Side::Agent).unwrap())
            })
            .collect();
        let created = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|c| *c == Setup::NewCa)
            .count();
        assert_eq!(created, 1);
        // The leaf certificates chain to the one CA left on disk.
        crate::tls::server_config(&crate::TlsFiles::agent(&home)).expect("agent config");
        crate::tls::client_config(&crate::TlsFiles::controller(&home)).expect("controller config");
    }

    fn setup() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        ensure_local(&home, Side::Agent).unwrap();
        (dir, home)
    }

    fn incomplete(home: &Home, side: Side) -> String {
        match ensure_local(home, side) {
            Err(e @ PkiError::Incomplete { .. }) => e.to_string(),
            other => panic!("expected an incomplete home, got {other:?}"),
        }
    }

    #[test]
    fn a_ca_key_without_its_certificate_is_never_replaced() {
        let (_dir, home) = setup();
        let key_before = fs::read(home.ca_key()).unwrap();
        fs::remove_file(home.ca_cert()).unwrap();
        let err = incomplete(&home, Side::Controller);
        assert!(err.contains("ca.pem") && err.contains("backup"), "{err}");
        assert_eq!(
            fs::read(home.ca_key()).unwrap(),
            key_before,
            "key untouched"
        );
        assert!(!home.ca_cert().exists(), "nothing created");
        // Nor by `pki init`.
        assert!(matches!(init(&home), Err(PkiError::CaExists(_))));
        assert_eq!(fs::read(home.ca_key()).unwrap(), key_before);
    }

    #[test]
    fn a_second_controller_needs_exactly_the_ca_its_certificate_and_key() {
        let (_dir, lab) = setup();
        let dir2 = tempfile::tempdir().unwrap();
        let home = Home::at(dir2.path());
        for (from, to) in [
            (lab.ca_cert(), home.ca_cert()),
            (lab.controller_cert(), home.controller_cert()),
            (lab.controller_key(), home.controller_key()),
        ] {
            fs::copy(from, to).unwrap();
        }
        assert_eq!(home.check(Side::Controller).unwrap(), HomeState::Ready);
        assert_eq!(
            ensure_local(&home, Side::Controller).unwrap(),
            Setup::Nothing
        );
        crate::tls::client_config(&crate::TlsFiles::controller(&home)).expect("usable");
        assert!(!home.ca_key().exists());
        // The agent in that home has nothing of its own and no CA key to issue it.
        let err = incomplete(&home, Side::Agent);
        assert!(err.contains("pki issue agent"), "{err}");
    }

    #[test]
    fn partial_homes_are_errors_naming_what_is_missing() {
        let (_dir, home) = setup();
        fs::remove_file(home.agent_key()).unwrap();
        let err = incomplete(&home, Side::Agent);
        assert!(err.contains("agent-key.pem"), "{err}");
        fs::remove_file(home.agent_cert()).unwrap();
        // Both halves gone, the CA key here: issued again.
        assert_eq!(ensure_local(&home, Side::Agent).unwrap(), Setup::Issued);
        fs::remove_file(home.controller_cert()).unwrap();
        let err = incomplete(&home, Side::Agent);
        assert!(err.contains("controller.pem"), "{err}");

        // A CA certificate and nothing else.
        let dir = tempfile::tempdir().unwrap();
        let lone = Home::at(dir.path());
        fs::copy(home.ca_cert(), lone.ca_cert()).unwrap();
        let err = incomplete(&lone, Side::Controller);
        assert!(err.contains("controller.pem"), "{err}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing created"
        );
    }

    #[test]
    fn init_refuses_an_existing_ca() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        init(&home).unwrap();
        let before = fs::read(home.ca_key()).unwrap();
        assert!(matches!(init(&home), Err(PkiError::CaExists(_))));
        assert_eq!(fs::read(home.ca_key()).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn keys_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, home) = setup();
        fs::set_permissions(home.controller_key(), fs::Permissions::from_mode(0o640)).unwrap();
        let err = crate::tls::client_config(&crate::TlsFiles::controller(&home)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, PkiError::KeyMode { mode: 0o640, .. }),
            "{text}"
        );
        assert!(
            text.contains("chmod 600") && text.contains("controller-key.pem"),
            "{text}"
        );
        fs::set_permissions(home.ca_key(), fs::Permissions::from_mode(0o604)).unwrap();
        assert!(matches!(
            Ca::load_home(&home),
            Err(PkiError::KeyMode { .. })
        ));
    }
}
