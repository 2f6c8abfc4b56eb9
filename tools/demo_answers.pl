# Greedy answers of the base and SFT models beside the truth, for the terminal.
# Usage: perl tools/demo_answers.pl questions.jsonl answers_base.jsonl answers_sft.jsonl
use strict;
use warnings;
use JSON::PP;

sub load {
    my %h;
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    while (<$f>) { my $r = decode_json($_); $h{$r->{id}} = $r }
    return \%h;
}

my ($q, $b, $s) = map { load($_) } @ARGV;
print "greedy answers to held-out questions (4 known places, 2 never described):\n";
for my $id (sort keys %$q) {
    (my $p = $q->{$id}{prompt}) =~ s/^User: |\nAssistant:$//g;
    my $a = $q->{$id}{answer} // "(never described: I don't know)";
    # Model output is untrusted: its control characters never reach the terminal.
    my @c = map { (my $c = $_->{$id}{completions}[0]) =~ s/[\x00-\x1f\x7f-\x9f]/ /g; $c } $b, $s;
    printf "  Q: %s   [truth: %s]\n     base: %s\n     sft:  %s\n", $p, $a, @c;
}
