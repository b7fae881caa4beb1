//! Where the command line finds the pool, the policies and the store.
//!
//! In this order, for each of `agents`, `policies` and `store`:
//! 1. the flag (`--agents`, `--policies`, `--store`) or its environment variable
//!    (`CONCLAVE_AGENTS`, `CONCLAVE_POLICIES`, `CONCLAVE_STORE`);
//! 2. a `conclave.toml` in the current folder or the nearest parent that has one (its paths
//!    are relative to the file): `agents = "agents"`, `policies = "policies"`,
//!    `store = ".conclave"`, each optional;
//! 3. the folder of that `conclave.toml`, else the current folder: its `agents/`,
//!    `policies/` and `.conclave/`.
//!
//! A command that needs agents or policies and finds none says where it looked.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use super::CliError;
use conclave::policy::Catalog;

/// The project file's name.
pub(crate) const FILE: &str = "conclave.toml";

/// The contents of `conclave.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    /// The agent definitions: a folder of .toml files or one file.
    agents: Option<PathBuf>,
    /// The policies: a folder of .toml files or one file.
    policies: Option<PathBuf>,
    /// The store directory.
    store: Option<PathBuf>,
}

/// The project the command runs in: the `conclave.toml` found, if any.
#[derive(Debug, Default)]
pub(crate) struct Project {
    /// The folder holding `conclave.toml`.
    root: Option<PathBuf>,
    file: ProjectFile,
}

/// A path and how it was chosen, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// The path.
    pub(crate) path: PathBuf,
    /// How it was found: `--agents`, `conclave.toml (/x/conclave.toml)`, `the current folder`.
    pub(crate) how: String,
}

impl Project {
    /// Looks for `conclave.toml` from the current folder up.
    ///
    /// # Errors
    /// A `conclave.toml` that cannot be read or parsed.
    pub(crate) fn find() -> Result<Self, CliError> {
        let Ok(cwd) = std::env::current_dir() else {
            return Ok(Self::default());
        };
        for dir in cwd.ancestors() {
            let path = dir.join(FILE);
            if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CliError::input(format!("cannot read {}: {e}", path.display())))?;
                let file: ProjectFile = toml::from_str(&text).map_err(|e| {
                    CliError::input(format!(
                        "{}: {} (it takes agents, policies and store)",
                        path.display(),
                        e.message().trim()
                    ))
                })?;
                return Ok(Self {
                    root: Some(dir.to_path_buf()),
                    file,
                });
            }
        }
        Ok(Self::default())
    }

    fn locate(
        &self,
        flag: Option<&Path>,
        flag_name: &str,
        field: Option<&Path>,
        default: &str,
    ) -> Located {
        if let Some(p) = flag {
            return Located {
                path: p.to_path_buf(),
                how: format!("--{flag_name} or $CONCLAVE_{}", flag_name.to_uppercase()),
            };
        }
        match (&self.root, field) {
            (Some(root), Some(p)) => Located {
                path: root.join(p),
                how: format!("{}", root.join(FILE).display()),
            },
            (Some(root), None) => Located {
                path: root.join(default),
                how: format!("the folder of {}", root.join(FILE).display()),
            },
            (None, _) => Located {
                path: PathBuf::from(default),
                how: "the current folder: no conclave.toml here or above".to_owned(),
            },
        }
    }

    /// The agent definitions to use.
    pub(crate) fn agents(&self, flag: Option<&Path>) -> Located {
        self.locate(flag, "agents", self.file.agents.as_deref(), "agents")
    }

    /// The policies to use.
    pub(crate) fn policies(&self, flag: Option<&Path>) -> Located {
        self.locate(flag, "policies", self.file.policies.as_deref(), "policies")
    }

    /// The store directory to use.
    pub(crate) fn store(&self, flag: Option<&Path>) -> PathBuf {
        self.locate(
            flag,
            "store",
            self.file.store.as_deref(),
            conclave::store::DEFAULT_DIR,
        )
        .path
    }
}

/// `--agents` and `--policies`, shared by every command that loads the pool.
#[derive(Debug, Args)]
pub(crate) struct Dirs {
    /// The agent definitions: a folder of .toml files, or one file (default: from
    /// conclave.toml, else ./agents).
    #[arg(long, env = "CONCLAVE_AGENTS", value_name = "PATH")]
    pub(crate) agents: Option<PathBuf>,
    /// The policies: a folder of .toml files, or one file (default: from conclave.toml,
    /// else ./policies).
    #[arg(long, env = "CONCLAVE_POLICIES", value_name = "PATH")]
    pub(crate) policies: Option<PathBuf>,
}

impl Dirs {
    /// Where the agents and the policies are, each checked to exist.
    ///
    /// # Errors
    /// A `conclave.toml` that cannot be read, or a path that does not exist.
    pub(crate) fn resolve(&self) -> Result<(PathBuf, PathBuf), CliError> {
        let project = Project::find()?;
        let agents = project.agents(self.agents.as_deref());
        let policies = project.policies(self.policies.as_deref());
        agents.existing("agents")?;
        policies.existing("policies")?;
        Ok((agents.path, policies.path))
    }

    /// The agents and policies, or every diagnostic on stderr and one line naming how many.
    ///
    /// # Errors
    /// A missing path, or files with problems.
    pub(crate) fn load(&self) -> Result<Catalog, CliError> {
        let (agents, policies) = self.resolve()?;
        let catalog = Catalog::load_dirs(&agents, &policies).map_err(|d| {
            for x in &d {
                eprintln!("{}", x.render());
            }
            CliError::input(format!(
                "the policy files have {} problem(s); run `conclave policy check`",
                d.len()
            ))
        })?;
        if catalog.policies.is_empty() {
            return Err(CliError::input(format!(
                "{} holds no policy (.toml files with a policy id)",
                policies.display()
            )));
        }
        Ok(catalog)
    }
}

impl Located {
    /// Refuses a path that does not exist, saying where it came from and where else one
    /// could be given.
    ///
    /// # Errors
    /// The path does not exist.
    pub(crate) fn existing(&self, what: &str) -> Result<&Path, CliError> {
        if self.path.exists() {
            return Ok(&self.path);
        }
        let shown = std::env::current_dir()
            .map(|d| d.join(&self.path))
            .unwrap_or_else(|_| self.path.clone());
        Err(CliError::input(format!(
            "no {what} found: {} does not exist (from {}); pass --{what} PATH, set $CONCLAVE_{}, or write a {FILE} that names them",
            shown.display(),
            self.how,
            what.to_uppercase()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_the_flag_then_the_project_file_then_its_folder() {
        let p = Project {
            root: Some(PathBuf::from("/p")),
            file: ProjectFile {
                agents: Some(PathBuf::from("pool")),
                policies: None,
                store: None,
            },
        };
        assert_eq!(p.agents(Some(Path::new("x"))).path, PathBuf::from("x"));
        assert_eq!(p.agents(None).path, PathBuf::from("/p/pool"));
        assert_eq!(p.policies(None).path, PathBuf::from("/p/policies"));
        assert_eq!(p.store(None), PathBuf::from("/p/.conclave"));
        let none = Project::default();
        assert_eq!(none.agents(None).path, PathBuf::from("agents"));
        assert!(none.agents(None).how.contains("no conclave.toml"));
        let e = none
            .agents(Some(Path::new("/nonexistent/agents.toml")))
            .existing("agents")
            .expect_err("missing");
        assert!(e.message.contains("/nonexistent/agents.toml"), "{e}");
    }
}
