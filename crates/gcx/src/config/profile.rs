//! The Genesys Cloud CLI's profiles (`~/.gc/config.toml`): a TOML table per profile with
//! `environment` (a region domain or name), `client_credentials` (the OAuth client id) and
//! `client_secret`. gcx reads those three keys and ignores the rest of the file, which
//! belongs to the other tool.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{ConfigError, Secret};

/// The profile used when the file exists and none is named.
pub const DEFAULT_PROFILE: &str = "DEFAULT";

/// The part of a profile gcx uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (`DEFAULT` when none was named).
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// `environment`: a region domain (`mypurecloud.com`) or name.
    pub environment: Option<String>,
    /// `client_credentials`: the OAuth client id.
    pub client_id: Option<String>,
    /// `client_secret`.
    pub client_secret: Option<Secret>,
}

/// Where the `gc` CLI keeps its profiles under a home folder.
pub fn profiles_path(home: &Path) -> PathBuf {
    home.join(".gc").join("config.toml")
}

/// Reads the profile `named` (or `DEFAULT` when `named` is `None`) from `path`.
///
/// `Ok(None)`: nothing to apply (no profile named and no file, or no `DEFAULT` in it).
/// A named profile that is missing, or a file that cannot be read or parsed, is an error
/// naming the file (and, for a missing profile, the profiles it holds).
pub fn read(path: &Path, named: Option<&str>) -> Result<Option<Profile>, ConfigError> {
    let text =
        match crate::bounded_read::read_to_string(path, crate::bounded_read::MAX_SETTINGS_FILE) {
            Ok(t) => t,
            Err(e) if e.is_not_found() && named.is_none() => {
                return Ok(None);
            }
            Err(e) => {
                return Err(ConfigError::Profile {
                    path: path.to_owned(),
                    message: match named {
                        Some(n) => {
                            format!("profile {n:?} was asked for, but the file cannot be read: {e}")
                        }
                        None => format!("cannot read the file: {e}"),
                    },
                });
            }
        };
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Profile {
            path: path.to_owned(),
            message: format!("not valid TOML: {}", e.to_string().trim()),
        })?;
    let name = named.unwrap_or(DEFAULT_PROFILE);
    let Some(section) = table.get(name) else {
        if named.is_none() {
            return Ok(None);
        }
        let mut names: Vec<&str> = table
            .iter()
            .filter(|(_, v)| v.is_table())
            .map(|(k, _)| k.as_str())
            .collect();
        names.sort_unstable();
        let available = if names.is_empty() {
            "the file has no profiles".to_owned()
        } else {
            format!("profiles in the file: {}", names.join(", "))
        };
        return Err(ConfigError::Profile {
            path: path.to_owned(),
            message: format!("no profile named {name:?}; {available}"),
        });
    };
    let Value::Table(section) = section else {
        return Err(ConfigError::Profile {
            path: path.to_owned(),
            message: format!(
                "`{name}` is not a table (expected [{name}] with environment, client_credentials, client_secret)"
            ),
        });
    };
    let text_of = |key: &str| -> Result<Option<String>, ConfigError> {
        match section.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(ConfigError::Profile {
                path: path.to_owned(),
                message: format!(
                    "[{name}] {key} must be a string, found a {}",
                    other.type_str()
                ),
            }),
        }
    };
    Ok(Some(Profile {
        name: name.to_owned(),
        path: path.to_owned(),
        environment: text_of("environment")?,
        client_id: text_of("client_credentials")?,
        client_secret: text_of("client_secret")?.map(Secret::new),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = profiles_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const FILE: &str = r#"
[DEFAULT]
environment = "mypurecloud.com"
client_credentials = "default-id"
client_secret = "default-secret"
access_token = "ignored"

[prod_eu]
environment = "mypurecloud.ie"
client_credentials = "eu-id"
"#;

    #[test]
    fn default_profile_when_none_named() {
        let (_d, path) = write(FILE);
        let p = read(&path, None).unwrap().unwrap();
        assert_eq!(p.name, "DEFAULT");
        assert_eq!(p.environment.as_deref(), Some("mypurecloud.com"));
        assert_eq!(p.client_id.as_deref(), Some("default-id"));
        assert_eq!(p.client_secret.unwrap().expose(), "default-secret");
        assert!(!format!("{:?}", read(&path, None)).contains("default-secret"));
    }

    #[test]
    fn named_profile() {
        let (_d, path) = write(FILE);
        let p = read(&path, Some("prod_eu")).unwrap().unwrap();
        assert_eq!(p.environment.as_deref(), Some("mypurecloud.ie"));
        assert_eq!(p.client_secret, None);
    }

    #[test]
    fn missing_profile_lists_the_others() {
        let (_d, path) = write(FILE);
        let e = read(&path, Some("staging")).unwrap_err().to_string();
        assert!(e.contains("\"staging\""), "{e}");
        assert!(e.contains("DEFAULT, prod_eu"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn no_file_is_fine_unless_a_profile_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = profiles_path(dir.path());
        assert_eq!(read(&path, None).unwrap(), None);
        let e = read(&path, Some("prod")).unwrap_err().to_string();
        assert!(e.contains("config.toml"), "{e}");
    }

    #[test]
    fn no_default_section_is_fine() {
        let (_d, path) = write("[other]\nenvironment = \"x\"\n");
        assert_eq!(read(&path, None).unwrap(), None);
    }

    #[test]
    fn bad_toml_names_the_file() {
        let (_d, path) = write("[DEFAULT\n");
        let e = read(&path, None).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
        assert!(e.contains(".gc"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let (_d, path) = write("[DEFAULT]\nclient_secret = 5\n");
        let e = read(&path, None).unwrap_err().to_string();
        assert!(e.contains("client_secret must be a string"), "{e}");
    }
}
