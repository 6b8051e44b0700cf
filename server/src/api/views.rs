//! JSON shapes of the v2 API.

use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    app::AppState,
    auth::DisplayData,
    error::ApiError,
    store::{TicketRecord, UserProfile},
};

/// A ticket in a list.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "3f9a1c0b7d2e6553a1b2", "files": ["src/Main.java", "README.md"], "is_public": false, "remark": "lab 3", "create_time": 1700000000000_i64}))]
pub struct TicketSummary<'a> {
    /// 20 lowercase hex characters.
    pub id: &'a str,
    /// Paths, `/`-separated, in upload order.
    pub files: Vec<&'a str>,
    pub is_public: bool,
    pub remark: &'a str,
    /// Unix milliseconds.
    pub create_time: i64,
}

impl<'a> From<&'a TicketRecord> for TicketSummary<'a> {
    fn from(t: &'a TicketRecord) -> Self {
        Self {
            id: &t.id,
            files: t.files.iter().map(|f| f.path.as_str()).collect(),
            is_public: t.is_public,
            remark: &t.remark,
            create_time: t.create_time,
        }
    }
}

/// A ticket with its author.
#[derive(Serialize, ToSchema)]
pub struct TicketFull<'a> {
    #[serde(flatten)]
    pub ticket: TicketSummary<'a>,
    pub author: Author,
}

#[derive(Serialize, ToSchema)]
pub struct Author {
    pub display_data: DisplayData,
}

impl<'a> TicketFull<'a> {
    pub async fn load(state: &AppState, ticket: &'a TicketRecord) -> Result<Self, ApiError> {
        Ok(Self {
            ticket: ticket.into(),
            author: Author {
                display_data: display_data(state, &ticket.author_id).await?,
            },
        })
    }
}

/// Display data of a user; a ticket whose author record is gone still shows
/// the author's id rather than failing.
pub async fn display_data(state: &AppState, user_id: &str) -> Result<DisplayData, ApiError> {
    let profile = match state.store.users.get(user_id).await? {
        Some(user) => user.profile,
        None => UserProfile {
            id: user_id.to_owned(),
            username: user_id.to_owned(),
            global_name: None,
            avatar: None,
        },
    };
    Ok(DisplayData::new(&profile, state.is_admin(user_id)))
}
