//! JSON shapes of the v2 API.

use serde::Serialize;
use utoipa::ToSchema;

use crate::{auth::DisplayData, service::tickets::AuthoredTicket, store::TicketRecord};

/// A ticket in a list.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "3f9a1c0b7d2e6553a1b2", "files": ["src/Main.java", "README.md"], "is_public": false, "remark": "lab 3", "create_time": 1700000000000_i64, "version": 1, "versions": 1}))]
pub struct TicketSummary<'a> {
    /// 20 lowercase hex characters.
    pub id: &'a str,
    /// Paths, `/`-separated, in upload order.
    pub files: Vec<&'a str>,
    pub is_public: bool,
    pub remark: &'a str,
    /// Unix milliseconds.
    pub create_time: i64,
    /// The version these files are (the newest unless `?version=` asked
    /// for another).
    pub version: i64,
    /// How many versions the ticket has.
    pub versions: i64,
}

impl<'a> From<&'a TicketRecord> for TicketSummary<'a> {
    fn from(t: &'a TicketRecord) -> Self {
        Self {
            id: &t.id,
            files: t.files.iter().map(|f| f.path.as_str()).collect(),
            is_public: t.is_public,
            remark: &t.remark,
            create_time: t.create_time,
            version: t.version(),
            versions: t.newest_version(),
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

impl<'a> From<&'a AuthoredTicket> for TicketFull<'a> {
    fn from(authored: &'a AuthoredTicket) -> Self {
        Self {
            ticket: (&authored.ticket).into(),
            author: Author {
                display_data: authored.author.clone(),
            },
        }
    }
}
