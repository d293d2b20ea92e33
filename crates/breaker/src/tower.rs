//! A tower [`Layer`] that puts a [`CircuitBreaker`] in front of any [`Service`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::{CircuitBreaker, OwnedPermit, Verdict};
use crate::error::CallError;

/// Wraps services with a shared breaker. Every error of the inner service counts
/// as a failure; a rejected request never reaches the inner service.
///
/// ```
/// use std::sync::Arc;
/// use cache_breaker::{CircuitBreaker, tower::BreakerLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Arc::new(CircuitBreaker::builder().consecutive_failures(1).build().unwrap());
/// let svc = BreakerLayer::new(breaker.clone())
///     .layer(service_fn(|n: u32| async move { if n > 0 { Ok(n) } else { Err("zero") } }));
/// assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
/// assert!(svc.clone().oneshot(0).await.is_err()); // trips
/// assert!(svc.oneshot(2).await.unwrap_err().is_rejected());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl BreakerLayer {
    /// A layer sharing `breaker` among every service it wraps.
    #[must_use]
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        BreakerLayer { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: Arc::clone(&self.breaker),
        }
    }
}

/// A service guarded by a breaker (see [`BreakerLayer`]).
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

/// The response future of [`BreakerService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, CallError<E>>> + Send>>;

impl<S, Req> Service<Req> for BreakerService<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = CallError<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CallError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match OwnedPermit::acquire(&self.breaker) {
            Err(rejected) => Box::pin(std::future::ready(Err(CallError::Rejected(rejected)))),
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    match fut.await {
                        Ok(v) => {
                            permit.settle(Verdict::Success);
                            Ok(v)
                        }
                        Err(e) => {
                            permit.settle(Verdict::Failure);
                            Err(CallError::Inner(e))
                        }
                    }
                })
            }
        }
    }
}
