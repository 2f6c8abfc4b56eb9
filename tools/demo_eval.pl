# The eval suites' headline values of several `plumb eval all` results, flat:
# "eval.MODEL.SUITE.METRIC" (MODEL from the file name all_MODEL.json) and each suite's seconds.
# Usage: perl tools/demo_eval.pl all_base.json all_sft.json ...
use strict;
use warnings;
use JSON::PP;

my %out;
for my $file (@ARGV) {
    my ($model) = $file =~ /all_(\w+)\.json$/ or die "$file: not an all_MODEL.json file\n";
    open my $f, '<', $file or die "$file: $!\n";
    my $r = decode_json(do { local $/; <$f> });
    for my $suite (keys %{ $r->{suites} }) {
        my $metrics = $r->{suites}{$suite}{metrics};
        # Per-category breakdowns ("bias/...", "acc_Age") stay in the results file.
        for my $name (grep { !m{/|_[A-Z]} } keys %$metrics) {
            $out{"eval.$model.$suite.$name"} = $metrics->{$name}{value};
        }
        $out{"eval.$model.$suite.seconds"} = $r->{seconds}{$suite};
    }
}
print JSON::PP->new->canonical->encode(\%out), "\n";
