//! The Director: the orders ([`crate::directives`]) as the Governors read them, shared with
//! every Governor built with it (they read the current orders once per decision, and report
//! each hand-over to a human), kept in an [`OrderBook`] when the orders are shared between
//! processes and replicas.

use std::sync::Arc;

use tokio::sync::watch;

use crate::directives::ratchet_record;
pub use crate::directives::*;

/// The Director's orders, shared with the Governors built with it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Director {
    orders: Arc<watch::Sender<Arc<Directives>>>,
    /// Serialises changes (read, change, publish).
    changing: Arc<std::sync::Mutex<()>>,
    /// Where the orders are kept, if anywhere but in this process.
    book: Option<Arc<dyn OrderBook>>,
}

impl Default for Director {
    fn default() -> Self {
        Self::new(Directives::default())
    }
}

impl Director {
    /// A Director starting from these orders, kept in this process only.
    pub fn new(directives: Directives) -> Self {
        Self {
            orders: Arc::new(watch::Sender::new(Arc::new(directives))),
            changing: Arc::default(),
            book: None,
        }
    }

    /// A Director whose orders are kept in `book` (shared with every other process on it).
    ///
    /// # Errors
    /// The book cannot be read.
    pub fn kept_in(book: Arc<dyn OrderBook>) -> Result<Self, OrdersError> {
        let orders = book.orders()?;
        Ok(Self {
            book: Some(book),
            ..Self::new(orders)
        })
    }

    /// The current orders.
    pub fn current(&self) -> Arc<Directives> {
        self.orders.borrow().clone()
    }

    /// Gives an order: `change` applied to the orders, kept with its audit record in the
    /// book if there is one (then on the book's current orders, so that no replica's change
    /// is lost). The record appended, if any (none without a book).
    ///
    /// # Errors
    /// The order cannot be given, or the book failed (nothing changed).
    pub fn give(&self, change: Change) -> Result<Option<crate::audit::AuditRecord>, OrdersError> {
        // A poisoned lock only means an earlier change panicked: the orders are whole.
        let _guard = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &self.book {
            Some(book) => {
                let (after, record) = book.change(change)?;
                self.publish(after);
                Ok(record)
            }
            None => {
                let mut next = (*self.current()).clone();
                change(&mut next)?;
                self.orders.send_replace(Arc::new(next));
                Ok(None)
            }
        }
    }

    /// Gives `order` as `by` at `now`: the record appended (none without a book).
    ///
    /// # Errors
    /// The order cannot be given, or the book failed (nothing changed).
    pub fn order(
        &self,
        order: Order,
        by: &str,
        now: u64,
    ) -> Result<Option<crate::audit::AuditRecord>, OrdersError> {
        self.give(order.change(by, now)?)
    }

    /// Whether the orders are kept in a book (shared, recorded) or in this process only.
    pub fn is_kept(&self) -> bool {
        self.book.is_some()
    }

    /// Takes up the orders kept in the book, if another process changed them.
    ///
    /// # Errors
    /// The book cannot be read.
    pub fn refresh(&self) -> Result<(), OrdersError> {
        if let Some(book) = &self.book {
            let theirs = book.orders()?;
            let _guard = self
                .changing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.publish(theirs);
        }
        Ok(())
    }

    /// Counts a hand-over to a human in `domain` at `now` towards the ratchet; when it trips,
    /// the suspension is an order, recorded. The suspension, if this hand-over tripped it.
    ///
    /// # Errors
    /// The book failed.
    pub fn hand_over(&self, domain: &str, now: u64) -> Result<Option<Suspension>, OrdersError> {
        // The change may run more than once (a book retries it on a concurrent change): the
        // last run is the one kept.
        let tripped = Arc::new(std::sync::Mutex::new(None));
        let (out, domain) = (tripped.clone(), domain.to_owned());
        self.give(Arc::new(move |o: &mut Directives| {
            let s = o.handover(&domain, now);
            let record = s.as_ref().map(|s| ratchet_record(&domain, s));
            *out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
            Ok(record)
        }))?;
        Ok(tripped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take())
    }

    /// Publishes `orders` unless what is published is as new.
    fn publish(&self, orders: Directives) {
        if orders != *self.current() {
            self.orders.send_replace(Arc::new(orders));
        }
    }
}
