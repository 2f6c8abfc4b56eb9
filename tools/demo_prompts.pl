# The prompts of one part of the world's prompts.jsonl: "rm0" and "rm1" (the reward model's split,
# phrasing 0 or 1), "test". Usage: perl tools/demo_prompts.pl PART prompts.jsonl
use strict;
use warnings;
use JSON::PP;

my ($part, $file) = @ARGV;
my ($split, $phrasing) = $part =~ /^(rm|test)(\d?)$/ or die "unknown part '$part'\n";
open my $in, '<', $file or die "$file: $!\n";
while (my $line = <$in>) {
    my $r = decode_json($line);
    next if $r->{split} ne $split;
    next if $phrasing ne '' && $r->{phrasing} != $phrasing;
    print $line;
}
