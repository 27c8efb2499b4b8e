//! What a KEK registered over the API may reach on the host: only the PKCS#11 modules, PIN files and KMS endpoints
//! the operator allowed when starting the server (`--pkcs11-module`, `--pkcs11-pin-file`, `--kms-endpoint`), plus
//! whatever the system KEK — chosen by the operator on the command line — reaches itself.
//!
//! A URI is held against the allow-list from what [`sesame_kms::reach`] reads out of it, before anything is
//! opened: a refused URI loads no library, reads no file and makes no connection. Modules and PIN files match by
//! exact path; endpoints by exact origin (scheme, host and port — default ports made explicit, host lowercased), and
//! an endpoint with a user name or password is never allowed.

use std::path::PathBuf;

use sesame_kms::{KekUri, KmsError};

/// Why a KEK URI may not be used. Messages name the flag that would allow it, and never show a file's contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KekRefused {
    /// The URI itself is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A PKCS#11 module the operator did not allow.
    #[error(
        "the PKCS#11 module {0:?} is not allowed on this server: the operator allows a module by starting the \
         server with --pkcs11-module PATH (or SESAME_PKCS11_MODULES), and a KEK URI's module-path must equal one of \
         them"
    )]
    Module(PathBuf),
    /// A PIN file the operator did not allow.
    #[error(
        "the PIN file {0:?} is not allowed on this server: the operator allows a PIN file by starting the server \
         with --pkcs11-pin-file PATH (or SESAME_PKCS11_PIN_FILES); or leave pin-source out to use SESAME_PKCS11_PIN"
    )]
    PinFile(PathBuf),
    /// An endpoint the operator did not allow.
    #[error(
        "the KMS endpoint {0} is not allowed on this server: the operator allows an endpoint by starting the server \
         with --kms-endpoint ORIGIN (or SESAME_KMS_ENDPOINTS), matched by exact origin"
    )]
    Endpoint(String),
}

/// The modules, PIN files and endpoints KEKs may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KekAllowList {
    /// PKCS#11 modules, by exact path.
    pub pkcs11_modules: Vec<PathBuf>,
    /// PIN files for `pin-source=file:`, by exact path.
    pub pkcs11_pin_files: Vec<PathBuf>,
    /// KMS endpoints, as origins (`https://host[:port]`).
    pub endpoints: Vec<String>,
}

/// `scheme://host:port` of an http(s) URL, with the port made explicit; `None` for anything else, or a URL with
/// credentials in it.
pub fn origin(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", url.scheme()))
}

impl KekAllowList {
    /// Checks the endpoints given by the operator: each must be an http(s) origin.
    pub fn validate(&self) -> Result<(), String> {
        for e in &self.endpoints {
            if origin(e).is_none() {
                return Err(format!(
                    "--kms-endpoint {e:?} is not an http(s) origin such as https://kms.example.com:443"
                ));
            }
        }
        Ok(())
    }

    /// This list and everything `system_kek` reaches (the operator chose it).
    pub fn with_system_kek(mut self, system_kek: &KekUri) -> Result<KekAllowList, KmsError> {
        let reach = sesame_kms::reach(system_kek)?;
        self.pkcs11_modules.extend(reach.modules);
        self.pkcs11_pin_files.extend(reach.pin_files);
        self.endpoints.extend(reach.endpoints);
        Ok(self)
    }

    /// Whether opening `uri` stays within the list. Touches nothing.
    pub fn check(&self, uri: &KekUri) -> Result<(), KekRefused> {
        let reach = sesame_kms::reach(uri).map_err(|e| KekRefused::Invalid(e.to_string()))?;
        if let Some(m) = reach.modules.iter().find(|m| !self.pkcs11_modules.contains(m)) {
            return Err(KekRefused::Module(m.clone()));
        }
        if let Some(f) = reach.pin_files.iter().find(|f| !self.pkcs11_pin_files.contains(f)) {
            return Err(KekRefused::PinFile(f.clone()));
        }
        let allowed: Vec<String> = self.endpoints.iter().filter_map(|e| origin(e)).collect();
        for e in &reach.endpoints {
            match origin(e) {
                Some(o) if allowed.contains(&o) => {}
                Some(o) => return Err(KekRefused::Endpoint(o)),
                None => return Err(KekRefused::Endpoint(format!("{e:?}"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> KekUri {
        s.parse().unwrap()
    }

    #[test]
    fn origins_are_exact() {
        assert_eq!(
            origin("https://KMS.example.com/").as_deref(),
            Some("https://kms.example.com:443")
        );
        assert_eq!(
            origin("http://127.0.0.1:5000").as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            origin("https://kms.example.com:443/path").as_deref(),
            Some("https://kms.example.com:443")
        );
        assert_eq!(origin("https://user:pw@kms.example.com"), None);
        assert_eq!(origin("https://kms.example.com@evil.example"), None);
        assert_eq!(origin("file:///etc/passwd"), None);
        assert_eq!(origin("kms.example.com"), None);
    }

    #[test]
    fn only_what_was_allowed_passes() {
        let list = KekAllowList {
            pkcs11_modules: vec!["/usr/lib/softhsm/libsofthsm2.so".into()],
            pkcs11_pin_files: vec!["/run/secrets/pin".into()],
            endpoints: vec!["https://kms.example.com".into()],
        };
        let ok = "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin";
        assert_eq!(list.check(&uri(ok)), Ok(()));
        for (u, want) in [
            (
                "pkcs11:token=t;object=k?module-path=/tmp/evil.so",
                KekRefused::Module("/tmp/evil.so".into()),
            ),
            (
                "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/../softhsm/libsofthsm2.so",
                KekRefused::Module("/usr/lib/softhsm/../softhsm/libsofthsm2.so".into()),
            ),
            (
                "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/shadow",
                KekRefused::PinFile("/etc/shadow".into()),
            ),
            (
                "awskms://alias/k?region=eu-west-1&endpoint=https://kms.example.com.evil.example",
                KekRefused::Endpoint("https://kms.example.com.evil.example:443".into()),
            ),
            (
                "awskms://alias/k?region=eu-west-1&endpoint=http://kms.example.com",
                KekRefused::Endpoint("http://kms.example.com:80".into()),
            ),
            (
                "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?endpoint=https://evil.example",
                KekRefused::Endpoint("https://evil.example:443".into()),
            ),
            (
                "azurekeyvault://attacker.vault.azure.net/keys/k",
                KekRefused::Endpoint("https://attacker.vault.azure.net:443".into()),
            ),
        ] {
            assert_eq!(list.check(&uri(u)), Err(want), "{u}");
        }
        assert_eq!(
            list.check(&uri(
                "awskms://alias/k?region=eu-west-1&endpoint=https://KMS.example.com:443/"
            )),
            Ok(())
        );
        assert_eq!(
            list.check(&uri("awskms://alias/k?region=eu-west-1")),
            Ok(()),
            "AWS's own endpoint"
        );
        assert_eq!(list.check(&uri("local://default")), Ok(()));
        let with_system = KekAllowList::default()
            .with_system_kek(&uri("pkcs11:token=t;object=sys?module-path=/opt/hsm.so"))
            .unwrap();
        assert_eq!(
            with_system.check(&uri("pkcs11:token=t;object=org?module-path=/opt/hsm.so")),
            Ok(())
        );
        assert!(
            KekAllowList::default()
                .check(&uri("pkcs11:token=t;object=k?module-path=/opt/hsm.so"))
                .is_err()
        );
        assert!(
            KekAllowList {
                endpoints: vec!["not a url".into()],
                ..KekAllowList::default()
            }
            .validate()
            .is_err()
        );
    }
}
