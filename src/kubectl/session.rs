//! The plugin's connection to the cluster, as kubectl's: the kubeconfig (`KUBECONFIG`, the
//! current context or `--context`, its namespace or `--namespace`), and who that makes us.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::config::KubeConfigOptions;

use super::Error;

/// A client and the namespace commands act in.
pub struct Session {
    pub client: kube::Client,
    pub namespace: String,
}

impl Session {
    /// Connect as kubectl would: `context` (else the kubeconfig's current one, else in-cluster),
    /// `namespace` (else the context's, else `default`).
    pub async fn connect(context: Option<&str>, namespace: Option<&str>) -> Result<Session, Error> {
        let config = match context {
            Some(context) => {
                let options = KubeConfigOptions {
                    context: Some(context.to_string()),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| Error::Kubeconfig(format!("context {context}: {e}")))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?,
        };
        let namespace = namespace
            .filter(|n| !n.is_empty())
            .map_or_else(|| config.default_namespace.clone(), str::to_string);
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::Kubeconfig(format!("cannot build a client: {e}")))?;
        Ok(Session { client, namespace })
    }

    /// Who the API server says we are (`SelfSubjectReview`): the name the admission policies
    /// compare `requestedBy` and `approvedBy` with, and the groups they check approvers in.
    pub async fn whoami(&self) -> Result<Identity, Error> {
        let review = Api::<SelfSubjectReview>::all(self.client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|e| Error::from_kube("tell who you are (SelfSubjectReview)", e))?;
        Identity::from_review(review)
    }
}

/// A Kubernetes identity as the API server authenticated it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The identity a SelfSubjectReview reports.
    pub fn from_review(review: SelfSubjectReview) -> Result<Identity, Error> {
        let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
        match info.username {
            Some(user) if !user.is_empty() => Ok(Identity {
                user,
                groups: info.groups.unwrap_or_default(),
            }),
            _ => Err(Error::Invalid(
                "the API server did not say who you are (SelfSubjectReview has no user name): log in with a kubeconfig that names a user".to_string(),
            )),
        }
    }

    /// Whether this identity is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{SelfSubjectReviewStatus, UserInfo};

    #[test]
    fn the_identity_is_the_user_and_groups_the_api_server_reports() {
        let review = SelfSubjectReview {
            status: Some(SelfSubjectReviewStatus {
                user_info: Some(UserInfo {
                    username: Some("carol".into()),
                    groups: Some(vec!["approvers".into(), "system:authenticated".into()]),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let me = Identity::from_review(review).expect("identity");
        assert_eq!(me.user, "carol");
        assert!(me.in_group("approvers") && !me.in_group("sre"));
        let anonymous =
            Identity::from_review(SelfSubjectReview::default()).expect_err("no user name");
        assert!(anonymous.to_string().contains("did not say who you are"));
    }
}
