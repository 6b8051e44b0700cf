//! Who may do what with a ticket: the one place access is decided. Pure
//! functions of the ticket, the requester and the path they used, so the
//! whole matrix is tested without a database (see the tests below).

use crate::{auth::Requester, store::TicketRecord};

/// What a requester may learn of a ticket they asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// Answered exactly like a ticket that does not exist, so private
    /// tickets cannot be probed.
    Hidden,
    /// The ticket is visible but not theirs to change.
    Denied,
}

/// Reading: the path must name the author (`@me` is the requester), and
/// the ticket must be the requester's own, public, or the requester an
/// admin.
pub fn can_read(ticket: &TicketRecord, me: &Requester, path_user: &str) -> Access {
    let owner = me.resolve(path_user);
    let visible = ticket.author_id == me.id || me.is_admin || ticket.is_public;
    if ticket.author_id == owner && visible {
        Access::Granted
    } else {
        Access::Hidden
    }
}

/// Changing or deleting: only the author, whatever admin rights say; a
/// path that names somebody else is a ticket not found.
pub fn can_change(ticket: &TicketRecord, me: &Requester, path_user: &str) -> Access {
    if ticket.author_id != me.id {
        Access::Denied
    } else if me.resolve(path_user) != ticket.author_id {
        Access::Hidden
    } else {
        Access::Granted
    }
}

/// Listing: everything for the author and admins, the public tickets for
/// everybody else.
pub fn lists_only_public(me: &Requester, author_id: &str) -> bool {
    author_id != me.id && !me.is_admin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserProfile;

    fn requester(id: &str, is_admin: bool) -> Requester {
        Requester {
            device_session: None,
            id: id.to_owned(),
            is_admin,
            profile: UserProfile {
                id: id.to_owned(),
                username: id.to_owned(),
                global_name: None,
                avatar: None,
            },
        }
    }

    fn ticket(author: &str, is_public: bool) -> TicketRecord {
        TicketRecord {
            id: "0123456789abcdef0123".into(),
            author_id: author.into(),
            files: Vec::new(),
            is_public,
            remark: String::new(),
            create_time: 0,
            seq: Some(1),
            versions: Vec::new(),
            shown_version: None,
        }
    }

    /// Every (ticket visibility, requester, path) combination.
    #[test]
    fn the_access_matrix() {
        use Access::*;
        let author = requester("1", false);
        let other = requester("2", false);
        let admin = requester("9", true);
        let cases = [
            // (public, who, path user, read, change)
            (false, &author, "1", Granted, Granted),
            (false, &author, "@me", Granted, Granted),
            (false, &author, "2", Hidden, Hidden),
            (false, &other, "1", Hidden, Denied),
            (false, &other, "@me", Hidden, Denied),
            (false, &admin, "1", Granted, Denied),
            (false, &admin, "@me", Hidden, Denied),
            (true, &author, "1", Granted, Granted),
            (true, &other, "1", Granted, Denied),
            (true, &other, "2", Hidden, Denied),
            (true, &admin, "1", Granted, Denied),
        ];
        for (public, who, path, read, change) in cases {
            let t = ticket("1", public);
            assert_eq!(
                can_read(&t, who, path),
                read,
                "read public={public} by {} via {path}",
                who.id
            );
            assert_eq!(
                can_change(&t, who, path),
                change,
                "change public={public} by {} via {path}",
                who.id
            );
        }
    }

    #[test]
    fn lists_show_private_tickets_to_the_author_and_admins_only() {
        assert!(!lists_only_public(&requester("1", false), "1"));
        assert!(lists_only_public(&requester("2", false), "1"));
        assert!(!lists_only_public(&requester("9", true), "1"));
    }
}
