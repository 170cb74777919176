# A stand-in for the parts of Homebrew that wire's formula uses, so the test
# can load the generated formula, pick the download for one platform, run
# its install block into a prefix and run its test block, as brew would.
#
#   ruby brew.rb FORMULA OS ARCH            prints "url sha256 version"
#   ruby brew.rb FORMULA OS ARCH SRC PREFIX  also installs SRC's files into
#                                            PREFIX/bin and runs the test block
#
# OS is macos or linux, ARCH arm or intel. Only Homebrew's own DSL exists
# here: a formula that calls anything else fails to load, as it would in brew.
require "pathname"
require "fileutils"

# Homebrew's Pathname extensions used by install blocks.
class Pathname
  def install(*names)
    mkpath
    names.each { |n| FileUtils.mv(n, join(File.basename(n))) }
  end

  def install_symlink(links)
    mkpath
    links.each do |src, name|
      target = Pathname(src).expand_path(self).relative_path_from(self)
      FileUtils.ln_sf(target, join(name))
    end
  end
end

class Formula
  PLATFORM = { os: ARGV[1], arch: ARGV[2] }.freeze

  class << self
    attr_reader :stanzas

    %i[desc homepage license url sha256].each do |name|
      define_method(name) do |value|
        (@stanzas ||= {})[name] = value
      end
    end

    def version(value = nil)
      return @stanzas[:version] if value.nil?

      (@stanzas ||= {})[:version] = value
    end

    def on_macos = (yield if PLATFORM[:os] == "macos")
    def on_linux = (yield if PLATFORM[:os] == "linux")
    def on_arm = (yield if PLATFORM[:arch] == "arm")
    def on_intel = (yield if PLATFORM[:arch] == "intel")

    def test(&block)
      @test = block
    end

    def inherited(subclass)
      super
      @formula = subclass
    end

    attr_reader :formula
  end

  attr_reader :bin

  def initialize(prefix)
    @bin = Pathname(prefix).join("bin")
  end

  def version = self.class.stanzas[:version]

  def run_test = instance_eval(&self.class.instance_variable_get(:@test))

  def shell_output(cmd)
    out = `#{cmd}`
    raise "#{cmd}: exit #{$?.exitstatus}" unless $?.success?

    out
  end

  def assert_match(want, got)
    raise "#{got.inspect} does not contain #{want.inspect}" unless got.include?(want)
  end
end

formula_file, _os, _arch, src, prefix = ARGV
load formula_file
klass = Formula.formula
stanzas = klass.stanzas
%i[desc homepage license version url sha256].each do |key|
  raise "formula has no #{key} for #{ARGV[1]}/#{ARGV[2]}" unless stanzas[key]
end
puts [stanzas[:url], stanzas[:sha256], stanzas[:version]].join(" ")
exit if src.nil?

f = klass.new(prefix)
Dir.chdir(src) { f.install }
raise "caveats are empty" if f.caveats.to_s.strip.empty?
f.run_test
