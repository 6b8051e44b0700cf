//! Writes to several collections sent as one ordered batch: one round trip
//! where the server has `bulkWrite` (MongoDB 8.0 and SecantusDB), one per
//! run of same-collection writes where it has not.
//!
//! Order is the guarantee everything else leans on: a write runs only after
//! every write before it succeeded, so an upload's journal entry always
//! lands before its chunks, its chunks before their files documents, and
//! those before the ticket that points at them (an upload sent in one batch
//! has no journal entry and leads with its files documents instead: see
//! `service::upload`).

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use mongodb::{
    Database, Namespace,
    bson::Document,
    bson::{Bson, oid::ObjectId},
    error::ErrorKind,
    options::{DeleteOneModel, InsertOneModel, UpdateManyModel, WriteModel},
};

use super::{Gate, Result};

#[derive(Clone)]
enum Write {
    Insert(&'static str, Document),
    DeleteOne(&'static str, Document),
    /// Filter and update.
    UpdateMany(&'static str, Document, Document),
}

impl Write {
    fn collection(&self) -> &'static str {
        match self {
            Write::Insert(c, _) | Write::DeleteOne(c, _) | Write::UpdateMany(c, _, _) => c,
        }
    }
}

/// Whether the server takes `bulkWrite`, learned from the first batch:
/// until then a batch keeps its documents to send them one by one should
/// the server refuse; afterwards they are moved into the command.
#[derive(Clone, Default)]
pub(super) struct BulkSupport(Arc<AtomicU8>);

// 0, the default: not known yet.
const SUPPORTED: u8 = 1;
const UNSUPPORTED: u8 = 2;

/// Writes collected in order and sent by [`WriteBatch::send`].
pub struct WriteBatch {
    db: Database,
    gate: Gate,
    bulk: BulkSupport,
    writes: Vec<Write>,
    /// Bytes of documents waiting, roughly (the BSON they become).
    bytes: usize,
}

impl WriteBatch {
    pub(super) fn new(db: Database, gate: Gate, bulk: BulkSupport) -> Self {
        Self {
            db,
            gate,
            bulk,
            writes: Vec::new(),
            bytes: 0,
        }
    }

    /// The same batch, waiting up to the abandon limit rather than the
    /// request deadline (see `Store::background`).
    pub fn patient(mut self) -> Self {
        self.gate = self.gate.patient();
        self
    }

    pub fn insert(&mut self, collection: &'static str, document: Document) {
        self.bytes += document_size(&document);
        self.writes.push(Write::Insert(collection, document));
    }

    /// Puts an insert before everything already waiting.
    pub fn insert_first(&mut self, collection: &'static str, document: Document) {
        self.bytes += document_size(&document);
        self.writes.insert(0, Write::Insert(collection, document));
    }

    /// Moves the inserts into `collection` before all other writes,
    /// keeping the order among each.
    pub fn lead_with(&mut self, collection: &'static str) {
        let (mut first, rest): (Vec<Write>, Vec<Write>) = std::mem::take(&mut self.writes)
            .into_iter()
            .partition(|w| matches!(w, Write::Insert(c, _) if *c == collection));
        first.extend(rest);
        self.writes = first;
    }

    pub fn delete_one(&mut self, collection: &'static str, filter: Document) {
        self.writes.push(Write::DeleteOne(collection, filter));
    }

    pub fn update_many(&mut self, collection: &'static str, filter: Document, update: Document) {
        self.writes
            .push(Write::UpdateMany(collection, filter, update));
    }

    /// Drops the inserts not sent yet whose `field` is one of `ids` (the
    /// files documents and chunks of files an upload found stored
    /// already).
    pub fn drop_inserts(&mut self, collection: &'static str, field: &str, ids: &[ObjectId]) {
        self.writes.retain(|w| match w {
            Write::Insert(c, d) if *c == collection => {
                !matches!(d.get(field), Some(Bson::ObjectId(id)) if ids.contains(id))
            }
            _ => true,
        });
        self.bytes = self
            .writes
            .iter()
            .map(|w| match w {
                Write::Insert(_, d) => document_size(d),
                _ => 0,
            })
            .sum();
    }

    /// Bytes waiting to be sent.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sends every waiting write, in order, stopping at the first failure.
    /// The batch is empty afterwards either way: what failed is the
    /// caller's to clean up (an upload's journal covers it).
    pub async fn send(&mut self) -> Result<()> {
        let writes = std::mem::take(&mut self.writes);
        self.bytes = 0;
        if writes.is_empty() {
            return Ok(());
        }
        match self.bulk.0.load(Ordering::Relaxed) {
            SUPPORTED => {
                let models = writes.into_iter().map(|w| self.model(w)).collect();
                self.bulk_write(models).await
            }
            UNSUPPORTED => self.send_one_by_one(writes).await,
            _ => {
                let models = writes.iter().cloned().map(|w| self.model(w)).collect();
                match self.bulk_write(models).await {
                    Err(super::StoreError::Mongo(e))
                        if matches!(*e.kind, ErrorKind::IncompatibleServer { .. }) =>
                    {
                        tracing::info!(
                            "the database has no bulkWrite (MongoDB < 8.0): writing collection by collection"
                        );
                        self.bulk.0.store(UNSUPPORTED, Ordering::Relaxed);
                        self.send_one_by_one(writes).await
                    }
                    other => {
                        // Any other answer came from a server that took
                        // the command.
                        if other.is_ok() {
                            self.bulk.0.store(SUPPORTED, Ordering::Relaxed);
                        }
                        other
                    }
                }
            }
        }
    }

    async fn bulk_write(&self, models: Vec<WriteModel>) -> Result<()> {
        let client = self.db.client().clone();
        self.gate
            .run(async move {
                client.bulk_write(models).ordered(true).await?;
                Ok(())
            })
            .await
    }

    fn model(&self, write: Write) -> WriteModel {
        let namespace = Namespace::new(self.db.name(), write.collection());
        match write {
            Write::Insert(_, document) => InsertOneModel::builder()
                .namespace(namespace)
                .document(document)
                .build()
                .into(),
            Write::DeleteOne(_, filter) => DeleteOneModel::builder()
                .namespace(namespace)
                .filter(filter)
                .build()
                .into(),
            Write::UpdateMany(_, filter, update) => UpdateManyModel::builder()
                .namespace(namespace)
                .filter(filter)
                .update(update)
                .build()
                .into(),
        }
    }

    /// The same order without `bulkWrite`: one `insert` per run of inserts
    /// into the same collection, one `delete` per delete.
    async fn send_one_by_one(&self, writes: Vec<Write>) -> Result<()> {
        let mut writes = writes.into_iter().peekable();
        while let Some(write) = writes.next() {
            let collection = self.db.collection::<Document>(write.collection());
            match write {
                Write::Insert(name, first) => {
                    let mut documents = vec![first];
                    while let Some(Write::Insert(next, _)) = writes.peek() {
                        if *next != name {
                            break;
                        }
                        if let Some(Write::Insert(_, d)) = writes.next() {
                            documents.push(d);
                        }
                    }
                    self.gate
                        .run(async move {
                            collection.insert_many(documents).await?;
                            Ok(())
                        })
                        .await?;
                }
                Write::DeleteOne(_, filter) => {
                    self.gate
                        .run(async move {
                            collection.delete_one(filter).await?;
                            Ok(())
                        })
                        .await?;
                }
                Write::UpdateMany(_, filter, update) => {
                    self.gate
                        .run(async move {
                            collection.update_many(filter, update).await?;
                            Ok(())
                        })
                        .await?;
                }
            }
        }
        Ok(())
    }
}

fn document_size(document: &Document) -> usize {
    // Chunks dominate; their `data` is what matters.
    document
        .get("data")
        .and_then(|d| match d {
            mongodb::bson::Bson::Binary(b) => Some(b.bytes.len()),
            _ => None,
        })
        .unwrap_or(256)
}
