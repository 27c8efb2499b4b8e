//! What opening a KEK would reach outside the process: the PKCS#11 modules it loads, the PIN files it reads and the
//! network endpoints it sends credentials to. Read from the URI by the same parsers the adapters use, touching
//! nothing (no file is read, no library loaded, no connection made), so a server can hold a URI against what its
//! operator allowed before opening it.
//!
//! Endpoints are those a URI chooses: AWS's and Google's own default endpoints (picked from the region, or fixed)
//! are not listed, but an Azure Key Vault host is, since the URI names it and the credential sent there is valid for
//! every vault.

use std::path::PathBuf;

use crate::error::KmsError;
use crate::uri::{GcpKeyRef, KekUri, Pkcs11Uri};

/// What a KEK URI reaches on the host and the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// PKCS#11 modules (shared libraries) it would load.
    pub modules: Vec<PathBuf>,
    /// Files it would read a PIN from.
    pub pin_files: Vec<PathBuf>,
    /// Endpoints it would send requests and credentials to, as written in the URI (`https://host[:port]…`).
    pub endpoints: Vec<String>,
}

/// What opening `uri` would reach. A URI the adapters would refuse is refused here too, with their error.
pub fn reach(uri: &KekUri) -> Result<Reach, KmsError> {
    let invalid = |reason: String| KmsError::InvalidUri {
        reason: format!("{uri}: {reason}"),
    };
    let mut out = Reach::default();
    match uri.scheme() {
        "pkcs11" => {
            let p = Pkcs11Uri::parse(uri)?;
            out.modules.push(p.module_path);
            out.pin_files.extend(p.pin_file);
        }
        "awskms" => {
            // As the AWS adapter reads it: `region=` and `endpoint=` pairs after `?`, every one applied.
            let query = uri.rest().split_once('?').map(|(_, q)| q).unwrap_or("");
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("endpoint", e)) => out.endpoints.push(e.to_owned()),
                    // The default endpoint is built from the region: only a DNS label keeps it AWS's.
                    Some(("region", r))
                        if r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                    {
                        return Err(invalid(format!("region={r:?} is not a region name")));
                    }
                    _ => {}
                }
            }
        }
        "gcpkms" => {
            let key = GcpKeyRef::parse(uri.rest()).map_err(invalid)?;
            out.endpoints.extend(key.endpoint);
        }
        "azurekeyvault" => {
            // The vault host is where the adapter sends its bearer token (`https://{authority}/`).
            let authority = uri.rest().split(['/', '?', '#']).next().unwrap_or("");
            out.endpoints
                .push(format!("https://{}", authority.to_ascii_lowercase()));
        }
        // `local://` and `passphrase://` stay in the data folder and the process.
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(uri: &str) -> Result<Reach, KmsError> {
        reach(&uri.parse().unwrap())
    }

    #[test]
    fn each_scheme_names_what_it_would_touch() {
        let r = of("pkcs11:token=t;object=k?module-path=/opt/hsm/lib.so&pin-source=file:/run/pin").unwrap();
        assert_eq!(r.modules, [PathBuf::from("/opt/hsm/lib.so")]);
        assert_eq!(r.pin_files, [PathBuf::from("/run/pin")]);
        assert!(r.endpoints.is_empty());
        let r = of("pkcs11:token=t;object=k;module-path=%2Ftmp%2Fx.so").unwrap();
        assert_eq!(
            r.modules,
            [PathBuf::from("/tmp/x.so")],
            "percent-decoded as the loader reads it"
        );
        assert!(of("pkcs11:token=t;object=k;module-path=/a.so?module-path=/b.so").is_err());
        let r = of("awskms://alias/k?region=eu-west-1&endpoint=http://127.0.0.1:5000&endpoint=https://x").unwrap();
        assert_eq!(r.endpoints, ["http://127.0.0.1:5000", "https://x"]);
        assert!(of("awskms://alias/k?region=eu-west-1").unwrap().endpoints.is_empty());
        assert!(of("awskms://alias/k?region=x.evil.example/").is_err());
        let r =
            of("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?endpoint=https://kms.example:8443").unwrap();
        assert_eq!(r.endpoints, ["https://kms.example:8443"]);
        let r = of("azurekeyvault://My-Vault.vault.azure.net/keys/k").unwrap();
        assert_eq!(r.endpoints, ["https://my-vault.vault.azure.net"]);
        assert_eq!(of("local://default").unwrap(), Reach::default());
    }
}
