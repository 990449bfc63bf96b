"""Context words: a custom entity scores higher when one of its words comes just before it.

A policy's custom entity may list `context` words ("order" for an order
number). Presidio's own enhancer compares them with the lemmas of the words
around a finding, and the NER-only pipeline has no lemmatizer (it would cost
more than the NER), so it never matched anything. This one compares them with
the words themselves, lower-cased, and otherwise does what Presidio's does with
its defaults: a context word among the five words before a finding (or inside
the finding's first word, "order#123") adds 0.35 to its score, which is then
at least 0.4. A context word matches as a substring of a word, as in
Presidio: "order" is also found in "orders", the plural a lemma would have
folded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from spacy.tokens import Doc

# Presidio's defaults (LemmaContextAwareEnhancer): what a context word nearby adds to a
# score, and the least a score with a context word nearby is.
CONTEXT_BOOST = 0.35
MIN_SCORE_WITH_CONTEXT = 0.4
WORDS_BEFORE = 5
"""How many words before a finding are near it (punctuation is not a word)."""


def words_before(doc: Doc, start: int, count: int = WORDS_BEFORE) -> list[str]:
    """The word at character `start` and up to `count` words before it, lower-cased."""
    index = next((token.i for token in doc if start < token.idx + len(token)), None)
    if index is None:
        return []
    words: list[str] = []
    for token in reversed(doc[: index + 1]):
        if token.is_punct or token.is_space:
            continue
        words.append(token.lower_)
        if len(words) > count:
            break
    return words


def supporting_word(context: Sequence[str], words: Sequence[str]) -> str | None:
    """The first context word found inside one of `words` (lower-cased), if any."""
    for candidate in context:
        folded = candidate.lower()
        if any(folded in word for word in words):
            return candidate
    return None


def context_word_enhancer(exempt: Collection[str]) -> ContextAwareEnhancer:
    """Presidio's context step on words instead of lemmas, for recognizers not in `exempt`.

    `exempt` holds the ids of the analyzer's own recognizers: Presidio's
    declare context words too ("card", "phone"), but detection was tuned and
    evaluated with those never applied, so their scores stay as they are.
    """
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    class ContextWordEnhancer(ContextAwareEnhancer):
        def enhance_using_context(
            self,
            text: str,
            raw_results: list[RecognizerResult],
            nlp_artifacts: NlpArtifacts,
            recognizers: list[EntityRecognizer],
            context: list[str] | None = None,
        ) -> list[RecognizerResult]:
            declaring = {r.id: r for r in recognizers if r.context and r.id not in exempt}
            if not declaring:
                return raw_results
            given = [word.lower() for word in context or ()]
            # The results are this analysis's own: raised in place, not copied.
            for result in raw_results:
                metadata = result.recognition_metadata or {}
                recognizer = declaring.get(metadata.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
                if recognizer is None or metadata.get(
                    RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY
                ):
                    continue
                before = words_before(nlp_artifacts.tokens, result.start, self.context_prefix_count)
                near = [*before, *given]
                word = supporting_word(recognizer.context, near)
                if word is None:
                    continue
                raised = max(
                    result.score + self.context_similarity_factor,
                    self.min_score_with_context_similarity,
                )
                result.score = min(raised, self.MAX_SCORE)
                if result.analysis_explanation is not None:
                    result.analysis_explanation.set_supportive_context_word(word)
                    result.analysis_explanation.set_improved_score(result.score)
            return raw_results

    return ContextWordEnhancer(CONTEXT_BOOST, MIN_SCORE_WITH_CONTEXT, WORDS_BEFORE, 0)
