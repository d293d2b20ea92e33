//! How the cache reaches Redis: the endpoint, credentials given apart from the
//! URL, and TLS (feature `tls`). Kept apart from the builder so the secrets
//! have one home, which has no `Debug` that could print them.

use cache_store_redis::RedisStoreBuilder;

/// Where L2 lives.
#[derive(Default)]
pub(crate) enum Endpoint {
    #[default]
    None,
    Url(String),
    Cluster(Vec<String>),
}

/// The endpoint and what the connection says and checks.
#[derive(Default)]
pub(crate) struct Connect {
    pub(crate) endpoint: Endpoint,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<cache_store_redis::TlsOptions>,
}

impl Connect {
    /// `redis` pointed at the endpoint, with the credentials and TLS applied.
    pub(crate) fn apply(&self, mut redis: RedisStoreBuilder) -> RedisStoreBuilder {
        redis = match &self.endpoint {
            Endpoint::Url(url) => redis.url(url.clone()),
            Endpoint::Cluster(urls) => redis.cluster(urls.clone()),
            Endpoint::None => redis,
        };
        if let Some(user) = &self.username {
            redis = redis.username(user.clone());
        }
        if let Some(password) = &self.password {
            redis = redis.password(password.clone());
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            redis = redis.tls(tls.clone());
        }
        redis
    }
}
