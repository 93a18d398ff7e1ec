//! What the page's routes read.

use std::sync::Arc;

use super::client_ip::Networks;
use super::status::Status;
use crate::backends::Backends;

#[derive(Clone)]
pub struct PageState {
    pub backends: Backends,
    pub identity: Arc<kit::Identity>,
    pub status: Status,
    /// Pod and node address ranges, to classify client IPs.
    pub networks: Arc<Networks>,
}
