"""The transaction coordinator: producer ids, and (with transactional ids) transactions."""
