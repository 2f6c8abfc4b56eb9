# A samples file with the abstention " I don't know." added to every record's completions, as a
# labelling form's fixed "abstain" option; per-completion fields (tokens, logprobs, finish) are
# dropped, since the added text was not sampled. Usage: perl tools/demo_idk.pl samples.jsonl
use strict;
use warnings;
use JSON::PP;

my $json = JSON::PP->new->utf8->canonical;
while (my $line = <>) {
    my $r = $json->decode($line);
    my %out = (id => $r->{id}, prompt => $r->{prompt},
               completions => [@{ $r->{completions} }, " I don't know."]);
    $out{model} = $r->{model} if defined $r->{model};
    print $json->encode(\%out), "\n";
}
