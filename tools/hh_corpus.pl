# Plain text for pretraining a small model before it becomes an HH-RLHF reward model: the
# dialogues of the first FRACTION of the pairs (the part the reward model trains on, so the
# held-out pairs stay unseen), one document each. The blank lines between turns become single
# newlines, because `plumb pretrain` splits documents at blank lines.
# Usage: zcat test.jsonl.gz | perl tools/hh_corpus.pl FRACTION >corpus.txt
use strict;
use warnings;
use JSON::PP;

my $fraction = shift // 0.8;
my @pairs = <STDIN>;
my $n = int(@pairs * $fraction);
for my $line (@pairs[0 .. $n - 1]) {
    my $r = decode_json($line);
    for my $text ($r->{chosen}, $r->{rejected}) {
        (my $doc = $text) =~ s/^\n+//;
        $doc =~ s/\n\n+/\n/g;
        binmode STDOUT, ':utf8';
        print $doc, "\n\n";
    }
}
