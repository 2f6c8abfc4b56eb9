# The reward model's headline figures from two `plumb rm eval --json` results: on fresh
# completions of its own split (both phrasings) and on the test prompts.
# Usage: perl tools/demo_rm.pl eval.json test.json
use strict;
use warnings;
use JSON::PP;

sub load {
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    return decode_json(do { local $/; <$f> });
}

my ($own, $test) = map { load($_) } @ARGV;
my %out = ('rm.accuracy' => $own->{accuracy}, 'rm.test_accuracy' => $test->{accuracy},
           'rm.test_accuracy_known' => $test->{kinds}{known}{accuracy});
$out{"rm.accuracy_$_"} = $own->{kinds}{$_}{accuracy} for qw(known unknown harmful);
printf STDERR "reward model: pairwise accuracy on fresh completions of its own split %.3f "
    . "(known %.3f, unknown %.3f, harmful %.3f); on the test prompts %.3f (known %.3f)\n",
    map { $out{$_} // 'nan' } qw(rm.accuracy rm.accuracy_known rm.accuracy_unknown
    rm.accuracy_harmful rm.test_accuracy rm.test_accuracy_known);
print JSON::PP->new->canonical->encode(\%out), "\n";
