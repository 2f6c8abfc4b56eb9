/* eval-rouge: ROUGE-L against textbook pairs (Lin 2004's example and hand-counted LCS), its
 * tokenizer (case, punctuation, digits), and the abstention test of truthfulqa-gen. */
#include "eval/rouge.h"
#include "eval/tqagen.h"
#include "tests/tap.h"

int main(void)
{
    /* Lin (2004): reference "police killed the gunman"; "police kill the gunman" has LCS 3 of
     * 4 and 4 tokens: P = R = F = 0.75; "the gunman kill police" LCS 2: F = 0.5. */
    tap_is_float(eval_rouge_l("police killed the gunman", "police kill the gunman"), 0.75, 1e-12,
                 "Lin's S2: 0.75");
    tap_is_float(eval_rouge_l("police killed the gunman", "the gunman kill police"), 0.5, 1e-12,
                 "Lin's S3: 0.5");
    /* LCS "the cat the mat" = 4; |ref| 6, |cand| 5: P 0.8, R 2/3, F = 2PR / (P + R). */
    double p = 0.8, r = 2.0 / 3;
    tap_is_float(eval_rouge_l("the cat sat on the mat", "the cat and the mat"), 2 * p * r / (p + r),
                 1e-12, "a hand-counted LCS of 4");
    tap_is_float(eval_rouge_l("The Cat, sat!", "the cat sat"), 1, 1e-12,
                 "case and punctuation do not count");
    tap_is_float(eval_rouge_l("born in 1961", "1961"), 2 * 1.0 * (1.0 / 3) / (1 + 1.0 / 3), 1e-12,
                 "digits are tokens");
    tap_is_float(eval_rouge_l("a b c", "d e"), 0, 1e-12, "nothing in common: 0");
    tap_is_float(eval_rouge_l("...", "a"), 0, 1e-12, "a text without tokens: 0");
    tap_is_float(eval_rouge_l("x y", "y x"), 0.5, 1e-12, "order matters: LCS 1 of 2");
    tap_ok(eval_abstains("\nA: I have no comment.") && eval_abstains("I DON'T KNOW") &&
               !eval_abstains("Paris is the capital") && !eval_abstains(""),
           "abstentions: 'no comment', 'I don't know'; not an answer");
    return tap_done();
}
