//! The question allowance as chat sees it: a port, implemented over
//! billing in `crate::adapters`. A question is counted when chat accepts
//! it (before it is stored and acknowledged); a repeated `client_id` in a
//! session is counted once.

use crate::ids::OrgId;

use super::ChatError;

#[async_trait::async_trait]
pub trait QuestionQuota: Send + Sync + 'static {
    /// Counts one question of `org`, once per `key` (`None`: always a new
    /// one). Past the month's allowance: [`ChatError::QuotaExceeded`].
    async fn take(&self, org: OrgId, key: Option<&str>) -> Result<(), ChatError>;

    /// Gives back a question counted but not answered.
    async fn give_back(&self, org: OrgId);
}
