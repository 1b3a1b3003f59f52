//! PostgreSQL as a job queue the standard way: a `jobs` table; enqueue is an
//! `INSERT` (a batch is one `INSERT ... SELECT unnest($2)`); a worker takes
//! up to `window` jobs with `SELECT ... FOR UPDATE SKIP LOCKED` in a
//! transaction, runs them, deletes them and commits, so a worker that dies
//! mid-way leaves its rows unlocked and available again. A statement-level
//! trigger sends `NOTIFY jobs` on every insert and idle workers `LISTEN`,
//! so they wake at once instead of polling. The server, started by
//! `bench/run-peers`, runs with `fsync = on` and `synchronous_commit = on`:
//! a commit returns after its WAL is flushed (concurrent commits share
//! flushes). Payloads are stored out of line without compression
//! (`STORAGE EXTERNAL`), as the other systems store them.
//!
//! tokio-postgres is async; a `Producer` here hands each request to a
//! task on a shared two-thread runtime, so requests issued before their
//! predecessors are acknowledged are pipelined on the connection.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use crate::harness::{monotonic_ns, stamp_of, Consumers, Probe, Producer, System};

#[derive(Debug)]
pub struct Postgres {
    config: tokio_postgres::Config,
    runtime: Runtime,
}

const SCHEMA: &str = "
DROP TABLE IF EXISTS jobs;
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    payload bytea NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE jobs ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE OR REPLACE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs', '');
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
";

impl Postgres {
    /// Connects to the server listening in `socket_directory` on `port`
    /// and creates the jobs table afresh.
    pub fn new(socket_directory: PathBuf, port: u16) -> Result<Postgres> {
        let mut config = tokio_postgres::Config::new();
        config.host_path(socket_directory).port(port).user("postgres").dbname("postgres");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let postgres = Postgres { config, runtime };
        postgres.runtime.block_on(async {
            let (client, _) = postgres.connect().await?;
            let settings =
                client.query_one("SELECT current_setting('fsync'), current_setting('synchronous_commit')", &[]).await?;
            let (fsync, synchronous_commit): (String, String) = (settings.get(0), settings.get(1));
            if fsync != "on" || synchronous_commit != "on" {
                bail!("PostgreSQL runs with fsync={fsync} synchronous_commit={synchronous_commit}; both must be on");
            }
            client.batch_execute(SCHEMA).await.context("creating the jobs table")
        })?;
        Ok(postgres)
    }

    /// A client whose connection runs as a task that wakes the returned
    /// `Notify` on every notification.
    async fn connect(&self) -> Result<(Client, Arc<Notify>)> {
        let (client, mut connection) = self.config.connect(NoTls).await.context("connecting to PostgreSQL")?;
        let notify = Arc::new(Notify::new());
        let notify_connection = notify.clone();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|context| connection.poll_message(context)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => notify_connection.notify_one(),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        Ok((client, notify))
    }
}

struct PostgresProducer {
    client: Arc<Client>,
    insert_one: Statement,
    insert_batch: Statement,
    queue: Arc<str>,
    runtime: tokio::runtime::Handle,
    acknowledgements: (mpsc::Sender<Result<()>>, mpsc::Receiver<Result<()>>),
}

impl Producer for PostgresProducer {
    fn send(&mut self, jobs: &[Vec<u8>]) -> Result<()> {
        let (client, queue, sender) = (self.client.clone(), self.queue.clone(), self.acknowledgements.0.clone());
        let jobs = jobs.to_vec();
        let statement = if jobs.len() == 1 { self.insert_one.clone() } else { self.insert_batch.clone() };
        self.runtime.spawn(async move {
            let result = if jobs.len() == 1 {
                client.execute(&statement, &[&&*queue, &jobs[0]]).await
            } else {
                client.execute(&statement, &[&&*queue, &jobs]).await
            };
            let _ = sender.send(result.map(drop).map_err(anyhow::Error::from));
        });
        Ok(())
    }

    fn receive(&mut self) -> Result<()> {
        self.acknowledgements.1.recv().context("the insert task vanished")?.context("inserting jobs")
    }
}

impl System for Postgres {
    fn producer(&self, queue: &str) -> Result<Box<dyn Producer>> {
        let (client, insert_one, insert_batch) = self.runtime.block_on(async {
            let (client, _) = self.connect().await?;
            let insert_one = client.prepare("INSERT INTO jobs (queue, payload) VALUES ($1, $2)").await?;
            let insert_batch =
                client.prepare("INSERT INTO jobs (queue, payload) SELECT $1, unnest($2::bytea[])").await?;
            anyhow::Ok((client, insert_one, insert_batch))
        })?;
        Ok(Box::new(PostgresProducer {
            client: Arc::new(client),
            insert_one,
            insert_batch,
            queue: queue.into(),
            runtime: self.runtime.handle().clone(),
            acknowledgements: mpsc::channel(),
        }))
    }

    fn consume(&self, queue: &str, workers: usize, window: usize, probe: Arc<Probe>) -> Result<Consumers> {
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (client, notify) = self.runtime.block_on(self.connect())?;
            let (queue, probe) = (queue.to_owned(), probe.clone());
            tasks.push(self.runtime.spawn(async move { work(client, notify, &queue, window, &probe).await }));
        }
        let runtime = self.runtime.handle().clone();
        Ok(Consumers {
            finish: Box::new(move || {
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(runtime.block_on(task)??);
                }
                Ok(all)
            }),
        })
    }
}

async fn work(mut client: Client, notify: Arc<Notify>, queue: &str, window: usize, probe: &Probe) -> Result<Vec<u64>> {
    client.batch_execute("LISTEN jobs").await?;
    let select = client
        .prepare("SELECT id, payload FROM jobs WHERE queue = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED")
        .await?;
    let delete = client.prepare("DELETE FROM jobs WHERE id = ANY($1)").await?;
    let record_latency = queue == "latency";
    let mut latencies = Vec::new();
    while !probe.stop.load(Ordering::Relaxed) {
        let transaction = client.transaction().await?;
        let rows = transaction.query(&select, &[&queue, &(window as i64)]).await?;
        if rows.is_empty() {
            transaction.rollback().await?;
            let _ = tokio::time::timeout(Duration::from_millis(100), notify.notified()).await;
            continue;
        }
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let payload: &[u8] = row.get(1);
            if record_latency {
                latencies.push(monotonic_ns() - stamp_of(payload).context("payload without a stamp")?);
            }
            ids.push(row.get::<_, i64>(0));
        }
        transaction.execute(&delete, &[&ids]).await?;
        transaction.commit().await?;
        probe.completed.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    Ok(latencies)
}
