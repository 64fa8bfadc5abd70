//! The CNI_* environment variables, with exactly the per-verb requirements
//! of the spec (1.1.0). All errors here are code 4 and name the variable,
//! except CNI_ARGS (see [`super::args`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::args::CniArgs;
use super::error::CniError;
use super::names::{ContainerId, IfName, NetnsPath, PluginName};

/// The process environment, taken as a value so tests need not mutate the real one.
pub type EnvMap = BTreeMap<String, String>;

/// The operation requested by `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach.
    Del,
    /// Verify an attachment.
    Check,
    /// Report readiness.
    Status,
    /// Report supported versions.
    Version,
    /// Release everything not in `cni.dev/valid-attachments`.
    Gc,
}

impl Command {
    /// The `CNI_COMMAND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Version => "VERSION",
            Self::Gc => "GC",
        }
    }

    /// Parses a `CNI_COMMAND` value (exact, upper case).
    pub fn parse(s: &str) -> Result<Self, CniError> {
        match s {
            "ADD" => Ok(Self::Add),
            "DEL" => Ok(Self::Del),
            "CHECK" => Ok(Self::Check),
            "STATUS" => Ok(Self::Status),
            "VERSION" => Ok(Self::Version),
            "GC" => Ok(Self::Gc),
            _ => Err(CniError::invalid_env(format!("unknown CNI_COMMAND {s:?}"))
                .with_details("CNI_COMMAND must be one of ADD, DEL, CHECK, STATUS, VERSION, GC")),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_PATH`: the directories to search for delegated plugins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniPath(Vec<PathBuf>);

impl CniPath {
    /// Splits on `:`, dropping empty entries.
    pub fn parse(s: &str) -> Self {
        Self(
            s.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        )
    }

    /// The directories, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.0
    }

    /// The first regular executable file named `plugin` in the search path.
    pub fn find(&self, plugin: &PluginName) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.0.iter().map(|d| d.join(plugin.as_str())).find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }

    /// The original `:`-joined form (for messages).
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl AsRef<[PathBuf]> for CniPath {
    fn as_ref(&self) -> &[PathBuf] {
        &self.0
    }
}

/// The per-attachment parameters of ADD, DEL and CHECK. `N` is the netns:
/// required (`NetnsPath`) for ADD/CHECK, optional for DEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment<N> {
    /// `CNI_CONTAINERID`.
    pub container_id: ContainerId,
    /// `CNI_IFNAME`.
    pub ifname: IfName,
    /// `CNI_NETNS`.
    pub netns: N,
    /// `CNI_ARGS`, parsed.
    pub args: CniArgs,
    /// `CNI_PATH` (optional for these verbs in spec 1.1.0).
    pub cni_path: Option<CniPath>,
}

/// A validated invocation: the verb and the environment it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// ADD: container ID, netns, ifname required.
    Add(Attachment<NetnsPath>),
    /// DEL: container ID and ifname required; netns optional.
    Del(Attachment<Option<NetnsPath>>),
    /// CHECK: container ID, netns, ifname required.
    Check(Attachment<NetnsPath>),
    /// STATUS: nothing but the command; CNI_PATH optional.
    Status {
        /// `CNI_PATH`, if set.
        cni_path: Option<CniPath>,
    },
    /// GC: CNI_PATH required.
    Gc {
        /// `CNI_PATH`.
        cni_path: CniPath,
    },
    /// VERSION: nothing but the command.
    Version,
}

impl Invocation {
    /// The verb.
    pub fn command(&self) -> Command {
        match self {
            Self::Add(_) => Command::Add,
            Self::Del(_) => Command::Del,
            Self::Check(_) => Command::Check,
            Self::Status { .. } => Command::Status,
            Self::Gc { .. } => Command::Gc,
            Self::Version => Command::Version,
        }
    }
}

/// Reads a variable; an empty value counts as unset, as in libcni.
fn get<'a>(env: &'a EnvMap, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Only the command, for callers that must decide before full validation.
pub fn parse_command(env: &EnvMap) -> Result<Command, CniError> {
    let cmd = get(env, "CNI_COMMAND")
        .ok_or_else(|| CniError::invalid_env("required env variables [CNI_COMMAND] missing"))?;
    Command::parse(cmd)
}

/// Validates the environment for the command it names.
pub fn parse(env: &EnvMap) -> Result<Invocation, CniError> {
    let command = parse_command(env)?;
    let required: &[&str] = match command {
        Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
        Command::Gc => &["CNI_PATH"],
        Command::Status | Command::Version => &[],
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| get(env, k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(CniError::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        ))
        .with_details(format!("{command} requires {}", required.join(", "))));
    }
    let cni_path = get(env, "CNI_PATH").map(CniPath::parse);
    let inv = match command {
        Command::Add => Invocation::Add(attachment(env, required_netns(env)?, cni_path)?),
        Command::Check => Invocation::Check(attachment(env, required_netns(env)?, cni_path)?),
        Command::Del => {
            // DEL must work when the netns is gone or garbage; keep it only if usable.
            let netns = get(env, "CNI_NETNS").and_then(|s| NetnsPath::new(s).ok());
            Invocation::Del(attachment(env, netns, cni_path)?)
        }
        Command::Status => Invocation::Status { cni_path },
        Command::Gc => Invocation::Gc {
            cni_path: cni_path.unwrap_or_default(),
        },
        Command::Version => Invocation::Version,
    };
    Ok(inv)
}

fn required_netns(env: &EnvMap) -> Result<NetnsPath, CniError> {
    let raw = get(env, "CNI_NETNS").unwrap_or_default();
    NetnsPath::new(raw)
        .map_err(|e| CniError::invalid_env(format!("invalid CNI_NETNS {raw:?}: {e}")))
}

fn attachment<N>(
    env: &EnvMap,
    netns: N,
    cni_path: Option<CniPath>,
) -> Result<Attachment<N>, CniError> {
    let id = get(env, "CNI_CONTAINERID").unwrap_or_default();
    let container_id = ContainerId::new(id).map_err(|e| {
        CniError::invalid_env(format!("invalid CNI_CONTAINERID {id:?}: {e}")).with_details(
            "a container ID must match [A-Za-z0-9][A-Za-z0-9_.-]* and be at most 200 bytes",
        )
    })?;
    let name = get(env, "CNI_IFNAME").unwrap_or_default();
    let ifname = IfName::new(name)
        .map_err(|e| CniError::invalid_env(format!("invalid CNI_IFNAME {name:?}: {e}")))?;
    let args = CniArgs::parse(get(env, "CNI_ARGS").unwrap_or_default())?;
    Ok(Attachment {
        container_id,
        ifname,
        netns,
        args,
        cni_path,
    })
}

/// Whether `path` is a directory listed in CNI_PATH (used by tests and messages).
pub fn path_contains(path: &CniPath, dir: &Path) -> bool {
    path.dirs().iter().any(|d| d == dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const FULL: [(&str, &str); 6] = [
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "net1"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ("PATH", "/usr/bin"),
    ];

    fn with(cmd: &str, drop: &[&str]) -> EnvMap {
        let mut e = env(&FULL);
        e.insert("CNI_COMMAND".into(), cmd.into());
        for d in drop {
            e.remove(*d);
        }
        e
    }

    #[test]
    fn add_requires_id_netns_ifname() {
        let Invocation::Add(a) = parse(&with("ADD", &["CNI_PATH", "CNI_ARGS"])).unwrap() else {
            panic!("not ADD")
        };
        assert_eq!(a.container_id.as_str(), "abc123");
        assert_eq!(a.netns.as_str(), "/run/netns/x");
        assert_eq!(a.ifname.as_str(), "net1");
        assert_eq!(a.cni_path, None);
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let e = parse(&with("ADD", &[var])).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment);
            assert!(e.msg.contains(var), "{e}");
        }
        let e = parse(&with("CHECK", &["CNI_NETNS", "CNI_IFNAME"])).unwrap_err();
        assert!(e.msg.contains("[CNI_NETNS,CNI_IFNAME]"), "{e}");
    }

    #[test]
    fn del_netns_optional_and_tolerant() {
        let Invocation::Del(d) = parse(&with("DEL", &["CNI_NETNS"])).unwrap() else {
            panic!("not DEL")
        };
        assert_eq!(d.netns, None);
        let mut e = with("DEL", &[]);
        e.insert("CNI_NETNS".into(), "relative/path".into());
        let Invocation::Del(d) = parse(&e).unwrap() else {
            panic!("not DEL")
        };
        assert_eq!(d.netns, None);
        assert!(parse(&with("DEL", &["CNI_IFNAME"])).is_err());
        assert!(parse(&with("DEL", &["CNI_CONTAINERID"])).is_err());
    }

    #[test]
    fn status_gc_version() {
        let only = |cmd: &str| env(&[("CNI_COMMAND", cmd)]);
        assert_eq!(
            parse(&only("STATUS")).unwrap(),
            Invocation::Status { cni_path: None }
        );
        assert_eq!(parse(&only("VERSION")).unwrap(), Invocation::Version);
        let e = parse(&only("GC")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert!(e.msg.contains("CNI_PATH"));
        let Invocation::Gc { cni_path } = parse(&with("GC", &["CNI_CONTAINERID"])).unwrap() else {
            panic!("not GC")
        };
        assert_eq!(
            cni_path.dirs(),
            &[PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert!(path_contains(&cni_path, Path::new("/usr/lib/cni")));
    }

    #[test]
    fn bad_values_are_code_4() {
        for (var, val) in [
            ("CNI_COMMAND", "add"),
            ("CNI_COMMAND", "FOO"),
            ("CNI_CONTAINERID", "../../etc"),
            ("CNI_IFNAME", "this-is-too-long0"),
            ("CNI_IFNAME", ".."),
            ("CNI_NETNS", "netns"),
        ] {
            let mut e = with("ADD", &[]);
            e.insert(var.into(), val.into());
            let err = parse(&e).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvironment, "{var}={val}");
            assert!(err.msg.contains(var), "{err}");
        }
        let e = parse(&env(&[])).unwrap_err();
        assert!(e.msg.contains("CNI_COMMAND"));
    }
}
