"""Repository names by their three-byte pieces (issue 17): a search text finds its candidates
in the names holding its rarest piece, instead of testing every name of the shard.

A name containing the text contains each of the text's trigrams, so the names under any one of
them are a superset of the matches; the rarest one (a kept count per trigram) is walked and
each name is still tested exactly. Names and texts are compared lower-case (zot's search is
case-insensitive), as UTF-8 bytes (a text is in a name exactly when its bytes are in the name's
bytes). A text shorter than a trigram has none: it is answered by walking the names, and most
names contain it anyway. Kept with the listing index (:class:`~shard.searchstore.ListingIndex`:
a name's trigrams are added with its entry and dropped with it), in the same transactions::

    grams      trigram name  -> b""    every trigram of every name with an entry
    gramcount  trigram       -> count  how many names hold it
"""

from __future__ import annotations

from collections.abc import Iterator

from shard.lmdbstore import LmdbStore, Txn

GRAM = 3


def trigrams(text: str) -> set[bytes]:
    """The distinct three-byte pieces of ``text``, lower-case (none if it is shorter)."""
    raw = text.lower().encode()
    return {raw[i:i + GRAM] for i in range(len(raw) - GRAM + 1)}


class NameGrams(LmdbStore):
    """Accessors of ``grams`` and ``gramcount`` (a base of :class:`~shard.searchstore.SearchStore`)."""

    def grams_add(self, txn: Txn, repo: str) -> None:
        self._grams_move(txn, repo, 1)

    def grams_drop(self, txn: Txn, repo: str) -> None:
        self._grams_move(txn, repo, -1)

    def _grams_move(self, txn: Txn, repo: str, delta: int) -> None:
        grams, name = self.db["grams"], repo.encode()
        for gram in trigrams(repo):
            count = int(self.get(txn, "gramcount", gram) or 0) + delta
            if count > 0:
                self.put(txn, "gramcount", gram, count)
            else:
                txn.delete(gram, db=self.db["gramcount"])
            if delta > 0:
                txn.put(gram + name, b"", db=grams)
            else:
                txn.delete(gram + name, db=grams)

    def gram_names(self, txn: Txn, text: str, counter: list[int], most: int) -> Iterator[str] | None:
        """The names holding ``text``'s rarest trigram, by name (a superset of those containing
        ``text``); None when ``text`` has no trigram or more than ``most`` names hold each of them
        (walking every name in order is then cheaper). ``counter[0]`` counts the reads."""
        wanted = trigrams(text)
        if not wanted:
            return None
        counts = {gram: int(self.get(txn, "gramcount", gram) or 0) for gram in wanted}
        counter[0] += len(counts)
        rarest = min(counts, key=lambda gram: (counts[gram], gram))
        if counts[rarest] > most:
            return None
        return self._names_under(txn, rarest, counter) if counts[rarest] else iter(())

    def _names_under(self, txn: Txn, gram: bytes, counter: list[int]) -> Iterator[str]:
        for k, _ in self.scan(txn, "grams", gram):
            counter[0] += 1
            yield bytes(k)[GRAM:].decode()
