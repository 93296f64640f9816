//! Where the operator may post a notification: `https` URLs only, so a policy admin cannot point
//! it at a plain-HTTP endpoint inside the cluster (a metadata service, an admin port). Plain
//! `http` goes only to hosts the operator was started to allow (`--allow-notification-http-host`,
//! for tests and local receivers). Redirects are never followed (the sender's client), so an
//! allowed URL cannot bounce the request elsewhere.
//!
//! Messages never quote the URL: a Slack incoming-webhook URL is a credential.

use url::Url;

/// Why a receiver's URL is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a URL with a host.
    NotAUrl,
    /// A scheme other than https or http.
    Scheme(String),
    /// Plain http to a host the operator was not started to allow.
    PlainHttp { host: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAUrl => f.write_str("its url is not an absolute URL with a host"),
            Refusal::Scheme(scheme) => write!(
                f,
                "its url has scheme {scheme:?}: notifications are posted to https URLs only"
            ),
            Refusal::PlainHttp { host } => write!(
                f,
                "its url is plain http to {host}: notifications are posted to https URLs only (plain http only to hosts the operator is started to allow with --allow-notification-http-host)"
            ),
        }
    }
}

/// The URL to post to, if the operator may: `https`, or `http` to a host (`host` or
/// `host:port`, lower case) in `plain_http_hosts`.
pub fn check(raw: &str, plain_http_hosts: &[String]) -> Result<Url, Refusal> {
    let url = Url::parse(raw.trim()).map_err(|_| Refusal::NotAUrl)?;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => return Err(Refusal::NotAUrl),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let with_port = url
                .port_or_known_default()
                .map(|p| format!("{host}:{p}"))
                .unwrap_or_else(|| host.clone());
            if plain_http_hosts
                .iter()
                .any(|a| *a == host || *a == with_port)
            {
                Ok(url)
            } else {
                Err(Refusal::PlainHttp { host })
            }
        }
        other => Err(Refusal::Scheme(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_unless_the_host_is_allowed_plain_http() {
        let none: Vec<String> = vec![];
        let loopback = vec!["127.0.0.1".to_string()];
        assert!(check("https://hooks.slack.com/services/T0/B0/XYZ", &none).is_ok());
        assert!(check("https://10.0.0.1:8443/hook", &none).is_ok());
        assert_eq!(
            check("http://169.254.169.254/latest/meta-data", &none),
            Err(Refusal::PlainHttp {
                host: "169.254.169.254".into()
            })
        );
        assert_eq!(
            check("http://svc.internal:8080/", &loopback),
            Err(Refusal::PlainHttp {
                host: "svc.internal".into()
            })
        );
        assert!(check("http://127.0.0.1:4567/hook", &loopback).is_ok());
        assert!(check("http://127.0.0.1:4567/hook", &["127.0.0.1:4567".into()]).is_ok());
        assert!(check("http://127.0.0.1:4568/hook", &["127.0.0.1:4567".into()]).is_err());
        assert_eq!(
            check("ftp://example.com/x", &loopback),
            Err(Refusal::Scheme("ftp".into()))
        );
        assert_eq!(check("hooks.slack.com/x", &none), Err(Refusal::NotAUrl));
        assert_eq!(check("unix:/run/x.sock", &none), Err(Refusal::NotAUrl));
    }

    #[test]
    fn a_refusal_never_quotes_the_url() {
        let secret_path = "T000/B000/very-secret-token";
        for raw in [
            format!("http://hooks.example.com/{secret_path}"),
            format!("gopher://hooks.example.com/{secret_path}"),
            format!("not a url {secret_path}"),
        ] {
            let refusal = check(&raw, &[]).expect_err("refused");
            assert!(!refusal.to_string().contains(secret_path), "{refusal}");
        }
    }
}
