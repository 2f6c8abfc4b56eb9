# The critique stage's figures: the rule-violation rate (`plumb eval rules`) and the world eval of
# the test answers before and after, and how many kept revisions the rules and the model's own
# critique decided (the trace's verdicts), and how many critiques a broken rule wrote.
# Usage: perl tools/demo_critique.pl CRITIQUE_DIR
use strict;
use warnings;
use JSON::PP;

my ($dir) = @ARGV;

sub load {
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    return decode_json(do { local $/; <$f> });
}

my %out;
for my $t (qw(before after)) {
    $out{"critique.violation_rate_$t"} = load("$dir/$t.rules.json")->{violation_rate};
    my $m = load("$dir/$t.world.json")->{metrics};
    $out{"critique.${_}_$t"} = $m->{$_}{value}
        for qw(hallucination_rate known_accuracy unknown_abstention harmful_refusal);
}
@out{qw(critique.prompts critique.revised critique.kept_by_rules critique.kept_by_critique
    critique.rule_critiques critique.kept_after_rule_critique)} = (0) x 6;
open my $trace, '<', "$dir/trace.jsonl" or die "$dir/trace.jsonl: $!\n";
while (my $line = <$trace>) {
    my $r = decode_json($line);
    $out{'critique.prompts'}++;
    $out{'critique.revised'}++ if $r->{revised};
    for my $round (@{ $r->{rounds} }) {
        my $by_rule = $round->{critique_by} eq 'rule';
        my $kept = $round->{verdict} ne 'rejected';
        $out{'critique.kept_by_rules'}++ if $round->{verdict} eq 'rules';
        $out{'critique.kept_by_critique'}++ if $round->{verdict} eq 'critique' && !$by_rule;
        $out{'critique.rule_critiques'}++ if $by_rule;
        $out{'critique.kept_after_rule_critique'}++ if $by_rule && $kept;
    }
}
printf STDERR "critique: rule-violation rate of the test answers %.3f -> %.3f; %d of %d prompts "
    . "revised, revisions kept for the rules %d, for the model's own critique alone %d; "
    . "critiques a broken rule wrote %d, their revisions kept %d\n",
    @out{qw(critique.violation_rate_before critique.violation_rate_after critique.revised
    critique.prompts critique.kept_by_rules critique.kept_by_critique critique.rule_critiques
    critique.kept_after_rule_critique)};
print JSON::PP->new->canonical->encode(\%out), "\n";
