# runs/demo/summary.json: every stage's figures (parts/*.json, flat objects) and seconds
# (parts/*.seconds, as "<stage>.seconds"), and demo.seconds, their sum.
# Usage: perl tools/demo_summary.pl PARTS_DIR PART.json...
use strict;
use warnings;
use JSON::PP;

my ($dir, @parts) = @ARGV;
my %all;
for my $file (@parts) {
    open my $f, '<', $file or die "$file: $!\n";
    my $r = decode_json(do { local $/; <$f> });
    @all{keys %$r} = values %$r;
}
my $total = 0;
for my $file (sort glob "$dir/*.seconds") {
    my ($stage) = $file =~ m{([^/]+)\.seconds$};
    open my $f, '<', $file or die "$file: $!\n";
    chomp(my $s = <$f>);
    $all{"$stage.seconds"} = $s + 0;
    $total += $s;
}
$all{'demo.seconds'} = sprintf('%.1f', $total) + 0;
print JSON::PP->new->canonical->encode(\%all), "\n";
